// `rind sample`: one sampling run from the command line, written as PNG.
import ArgumentParser
import Foundation
import RINDiffusion
import RINImage
import RINModel
import RINTensor

struct Sample: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample images from a checkpoint and write them as PNG.",
        discussion: """
            Unset options take the checkpoint's sampling defaults (config.json "sampling"). \
            Progress (step k/N, seconds per step) goes to stderr. Bad arguments print one line and \
            exit with status 2.
            """)

    @Option(help: "Checkpoint directory (config.json + model.safetensors). Default: checkpoints/imagenet64, else checkpoints/cifar10.")
    var checkpoint: String?

    @Option(name: .customLong("class"), help: "Class id (ImageNet id for ImageNet models, e.g. 207), name or synonym (e.g. 'golden retriever'); omit for an unconditional or null-class sample.")
    var classLabel: String?

    @Option(help: "Seed, 0...2^53-1: image i starts from noise(seed, i, 0).")
    var seed: UInt64 = 0

    @Option(help: "Denoising steps, 1...1000.")
    var steps: Int?

    @Option(help: "ddim or ddpm.")
    var sampler: String?

    @Option(help: "cosine, sigmoid or linear.")
    var schedule: String?

    @Option(help: "Classifier-free guidance weight, 0...30 (needs a model with a null class).")
    var guidance: Float?

    @Option(help: "Images in the run, 1...16.")
    var count: Int = 1

    @Flag(help: "With --count > 1: one PNG with the images in a grid (else out-0.png, out-1.png, ...).")
    var grid = false

    @Flag(help: "Video models: write each clip as an animated PNG (APNG) at the model's frame rate instead of its frames side by side.")
    var apng = false

    @Flag(help: "Reset the latents to zeros every step (evaluation mode) instead of carrying them.")
    var noCarry = false

    @Option(help: "OpenBLAS threads (default: all cores).")
    var threads: Int?

    @Option(name: [.short, .customLong("output")], help: "Output PNG path.")
    var output: String = "sample.png"

    func run() async throws {
        try reportingFailures(of: "rind sample") { try sample() }
    }

    private func sample() throws {
        let directory = try resolveCheckpoint()
        if let threads {
            guard threads >= 1 else { throw CommandLineError(message: "--threads must be >= 1 (got \(threads))") }
            BLASThreads.set(threads)
        } else {
            BLASThreads.set(ProcessInfo.processInfo.activeProcessorCount)
        }
        let checkpoint = try RINCheckpoint.load(from: directory)
        let config = checkpoint.config
        if apng { try checkClipOutput(config) }
        // The same resolution as the API's (SamplingRequest): the checkpoint's defaults, then the options.
        var request = SamplingRequest(seed: seed, steps: steps, guidance: guidance, count: count, carryLatents: !noCarry)
        if let classLabel, !classLabel.trimmingCharacters(in: .whitespaces).isEmpty {
            request.classIndex = try SamplingRequest.classRow(classLabel, in: checkpoint)
        }
        if let sampler { request.sampler = try SamplingRequest.sampler(sampler) }
        if let schedule { request.schedule = try SamplingRequest.schedule(schedule) }
        let parameters = try request.resolved(for: checkpoint.config)

        let run = try SamplingRun(checkpoint: checkpoint, parameters: parameters)
        let p = run.parameters
        FileHandle.standardError.write(Data(
            "sampling \(checkpoint.name): class \(p.classIndex.flatMap { checkpoint.classes.label(row: $0) }.map { "\($0.id)\($0.name.map { " (\($0))" } ?? "")" } ?? "none"), seed \(p.seed), \(p.steps) \(p.sampler.rawValue) steps, \(p.schedule.rawValue) schedule, guidance \(p.guidance), \(p.count) image(s), \(BLASThreads.current) thread(s)\n".utf8))
        let start = Date()
        while !run.isFinished {
            let stepStart = Date()
            run.step()
            let seconds = Date().timeIntervalSince(stepStart)
            FileHandle.standardError.write(Data(String(format: "step %d/%d  %.3f s/step\n", run.stepsDone, p.steps, seconds).utf8))
        }
        let total = Date().timeIntervalSince(start)
        if apng { try writeClips(run.estimate(), config: config) } else { try write(run.estimate()) }
        FileHandle.standardError.write(Data(String(format: "done in %.2f s (%.3f s/step)\n", total, total / Double(p.steps)).utf8))
    }

    private func resolveCheckpoint() throws -> URL {
        if let checkpoint { return URL(fileURLWithPath: checkpoint) }
        // The daemon's default model, from ./checkpoints.
        for name in Serve.preferredDefaults {
            let candidate = URL(fileURLWithPath: "checkpoints").appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("config.json").path) {
                return candidate
            }
        }
        throw CommandLineError(message: "--checkpoint is required (no checkpoints/\(Serve.preferredDefaults.joined(separator: " or checkpoints/")) here)")
    }

    private func write(_ images: [ImagePixels]) throws {
        let rasters = try images.map { image throws(ImageError) in
            try RasterImage(width: image.width, height: image.height, channels: image.channels, pixels: image.pixels)
        }
        let outputURL = URL(fileURLWithPath: output)
        if rasters.count == 1 || grid {
            let picture = try ImageGrid.compose(rasters)
            try PNG.encode(picture).write(to: outputURL)
            FileHandle.standardError.write(Data("wrote \(output)\n".utf8))
        } else {
            let base = outputURL.deletingPathExtension().path
            let ext = outputURL.pathExtension.isEmpty ? "png" : outputURL.pathExtension
            for (i, raster) in rasters.enumerated() {
                let path = "\(base)-\(i).\(ext)"
                try PNG.encode(raster).write(to: URL(fileURLWithPath: path))
                FileHandle.standardError.write(Data("wrote \(path)\n".utf8))
            }
        }
    }
}

/// A bad command-line value: printed as one line, exit status 2.
struct CommandLineError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Runs a subcommand's body and turns its typed failures into one line on stderr and an exit status:
/// 2 for bad input (arguments, parameters, checkpoints), 1 for failures writing the result.
func reportingFailures(of command: String, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as CommandLineError {
        try fail(command, error, status: 2)
    } catch let error as SamplingError {
        try fail(command, error, status: 2)
    } catch let error as CheckpointError {
        try fail(command, error, status: 2)
    } catch let error as ClassLookupError {
        try fail(command, error, status: 2)
    } catch let error as ImageError {
        try fail(command, error, status: 1)
    }
}

private func fail(_ command: String, _ error: any Error, status: Int32) throws -> Never {
    FileHandle.standardError.write(Data("\(command): \(error)\n".utf8))
    throw ExitCode(status)
}
