// `rind bench`: seconds per sampling step of the engine on the bundled and official configurations
// (random weights), model GFLOP/s against the machine's sgemm peak, peak RSS, and optionally the
// same network in ONNX Runtime and in PyTorch on the same threads, interleaved row by row.
import ArgumentParser
import Foundation
import RINDiffusion
import RINModel
import RINServer
import RINTensor

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark sampling steps on the official RIN configurations (random weights).",
        discussion: """
            A step is one network pass plus the DDIM update, latents carried, no guidance (as \
            Training/bench_torch.py and Training/bench_onnx.py time it). Each (config, batch) row runs \
            in a child process so its peak RSS is its own. With --onnx / --torch the engines' row \
            processes for a (config, batch) stay up side by side, each with its model loaded, and \
            take turns running bursts of steps (rind, ONNX Runtime, torch, rind, ...; --interleave \
            steps; one untimed step, then about 0.3 s of timed ones, a short pause between engines), \
            so that machine noise, which comes and goes over seconds, hits neighbouring bursts \
            alike: each engine's figure is the median of its timed steps, the "burst pairs" column \
            the median of the ratios of neighbouring bursts, the "fastest steps" column the ratio \
            of the fastest ones. --interleave rows runs whole rows one \
            after another instead, in --rounds rounds (figures: the median round). GFLOP/s counts \
            every matrix product of the network analytically from the config; the peak is a \
            2048^3 product on the same backend and threads (packed: rind's micro-kernels on a \
            packed weight; else the library's sgemm).
            """)

    /// The models timed by default: the bundled ones first, then the paper's official configs.
    /// Add a bundled model here by the name of its Training/configs/NAME.json.
    static let defaultConfigs = ["cifar10-bundled", "cifar10-official", "imagenet64-official"]

    @Option(help: "OpenBLAS threads (default: all cores).")
    var threads: Int?

    @Option(parsing: .upToNextOption, help: "Batch sizes (images per step), 1...16.")
    var batches: [Int] = [1, 2, 8]

    @Option(parsing: .upToNextOption, help: "Config names in --configs-dir.")
    var configs: [String] = Bench.defaultConfigs

    @Option(help: "Where the config JSON files are.")
    var configsDir: String = "Training/configs"

    @Option(help: "Untimed steps first.")
    var warmup: Int = 1

    @Option(help: "Timed steps (the median is reported).")
    var repeats: Int = 5

    @Option(help: "Python with torch: also run Training/bench_torch.py on the same threads.")
    var torch: String?

    @Option(help: "Python with torch, onnx and onnxruntime: also run Training/bench_onnx.py on the same threads.")
    var onnx: String?

    @Option(help: "ONNX Runtime's intra-op threads: on = spin between operators (its default), off = sleep as rind's do.")
    var onnxSpinning: String = "on"

    @Option(help: "With --onnx / --torch: steps = the engines take turns running short bursts of steps, their row processes side by side; rows = whole rows one after another, in --rounds rounds.")
    var interleave: String = "steps"

    @Option(help: "Rounds of (rind, ONNX Runtime, torch) rows per (config, batch) with --interleave rows; the median round is reported.")
    var rounds: Int = 1

    @Option(help: "Matrix-product backend: auto, openblas, onednn or packed (default auto: see MatmulBackend).")
    var matmul: String = "auto"

    @Option(help: "Run every row's process (rind's, ONNX Runtime's, torch's) on a CPUID that hides AVX-512 (avx2) or AVX as well (baseline), so that each engine picks the code it would pick on such a CPU (preloads librind-cpuid-mask.so from beside rind; needs Linux CPUID faulting).")
    var cpuidMask: String?

    @Flag(help: "Scaling mode: step time and peak memory for square images of --sizes pixels (ImageNet-64 official widths, 256 latents, patch 4 up to 128 px and 8 above, batch 1).")
    var scaling = false

    @Option(parsing: .upToNextOption, help: "Image sides for --scaling, multiples of 8, 8...2048.")
    var sizes: [Int] = [64, 128, 256, 512, 1024]

    @Flag(help: "Cross-job batching mode: --jobs J guided jobs of --checkpoint, run one after another and then as one batch (SamplingBatch); images/minute of each, --rounds rounds interleaved.")
    var crossJob = false

    @Option(parsing: .upToNextOption, help: "Concurrent jobs for --cross-job.")
    var jobs: [Int] = [1, 2, 4, 8]

    @Option(help: "Checkpoint for --cross-job.")
    var checkpoint: String = "checkpoints/cifar10"

    @Option(help: "Denoising steps per job for --cross-job (default: the checkpoint's).")
    var steps: Int?

    @Option(help: .hidden)
    var row: String?

    /// With --row: take steps when the parent asks (`LockstepRow`).
    @Flag(help: .hidden)
    var lockstep = false

    func run() async throws {
        try reportingFailures(of: "rind bench") { try bench() }
    }

    var threadCount: Int { threads ?? ProcessInfo.processInfo.activeProcessorCount }

    private func bench() throws {
        guard threadCount >= 1 else { throw CommandLineError(message: "--threads must be >= 1") }
        guard warmup >= 0, repeats >= 1, rounds >= 1 else {
            throw CommandLineError(message: "--warmup must be >= 0, --repeats and --rounds >= 1")
        }
        guard !batches.isEmpty, batches.allSatisfy({ SamplingParameters.countRange.contains($0) }) else {
            throw CommandLineError(message: "--batches must be 1...16")
        }
        guard onnxSpinning == "on" || onnxSpinning == "off" else {
            throw CommandLineError(message: "--onnx-spinning must be on or off")
        }
        guard interleave == "steps" || interleave == "rows" else {
            throw CommandLineError(message: "--interleave must be steps or rows")
        }
        if let cpuidMask, cpuidMask != "avx2" && cpuidMask != "baseline" {
            throw CommandLineError(message: "--cpuid-mask must be avx2 or baseline")
        }
        if matmul != "auto" {
            guard let backend = MatmulBackend(rawValue: matmul) else {
                throw CommandLineError(message: "--matmul must be auto, openblas, onednn or packed")
            }
            guard MatmulBackend.available.contains(backend) else {
                throw CommandLineError(message: "--matmul \(matmul): not available here (oneDNN needs Debian's libdnnl2)")
            }
            MatmulBackend.current = backend
        }
        BLASThreads.set(threadCount)
        if let row {
            try runRow(row)
            return
        }
        if scaling {
            try benchScaling()
            return
        }
        if crossJob {
            try benchCrossJob()
            return
        }
        let lockstepped = interleave == "steps" && (onnx != nil || torch != nil)
        guard rounds == 1 || !lockstepped else {
            throw CommandLineError(message: "--rounds applies to --interleave rows (with --onnx / --torch the engines take turns burst by burst)")
        }
        let environment = try rowEnvironment()
        let order = lockstepped
            ? "engines take turns: \(warmup) warm-up + \(repeats) timed bursts of \(Bench.lockstepBurst) s each (one untimed step, then steps), median step"
            : "\(warmup) warm-up + \(repeats) timed steps (median), \(rounds) round(s) of whole rows"
        print("rind bench: \(threadCount) thread(s), \(order); peak = best of three 2048^3 products on the row's matrix backend (packed: rind's micro-kernels on a packed weight), measured in each row's process right after its steps")
        let paths = cpuidMask.map {
            ", every row's process on a CPUID masked to \($0) (RIND_CPUID_MASK): the backend and kernels it chose follow the table"
        } ?? "; \(MatmulBackend.summary); row kernels \(KernelISA.current)"
        print("CPU: \(cpuModelName())\(paths)" + (onnx != nil ? "; ONNX Runtime threads spinning \(onnxSpinning)" : "") + "\n")
        var table = "| model | batch | rind s/step | GFLOP/step | GFLOP/s | peak GFLOP/s | % of peak | rind peak RSS (MiB) | weights + workspace (MiB) |"
        var rule = "|---|---|---|---|---|---|---|---|---|"
        for (name, enabled) in [("ORT", onnx != nil), ("torch", torch != nil)] where enabled {
            table += " \(name) s/step | \(name) peak RSS (MiB) | rind / \(name) |"
            rule += "---|---|---|"
            if lockstepped {
                table += " burst pairs, rind / \(name) |"
                rule += "---|"
            }
            table += " fastest steps, rind / \(name) |"
            rule += "---|"
        }
        print(table)
        print(rule)
        var chosen: [String: Set<String>] = [:]   // engine -> the code paths its row processes reported
        for config in configs {
            for batch in batches {
                let row = lockstepped ? try lockstepRow(config: config, batch: batch, environment: environment)
                                      : try roundsRow(config: config, batch: batch, environment: environment)
                for r in row.rindRuns {
                    chosen["rind", default: []].insert("matmul \(r["matmul"] ?? "?"), row kernels \(r["kernels"] ?? "?")")
                }
                for (engine, figures) in [("ONNX Runtime", row.ort), ("torch", row.torch)] {
                    for line in figures.runs { chosen[engine, default: []].insert("torch's CPU capability \(line["cpu_capability"] ?? "?")") }
                }
                print(tableLine(row, lockstepped: lockstepped))
                fflush(nil)   // each line as soon as its row is done, also into a pipe or a file
            }
        }
        print("\nCode paths the rows' processes reported:")
        for engine in ["rind", "ONNX Runtime", "torch"] where chosen[engine] != nil {
            print("- \(engine): \(chosen[engine]!.sorted().joined(separator: "; "))")
        }
    }

    /// The table's line for one (config, batch).
    private func tableLine(_ r: ComparedRow, lockstepped: Bool) -> String {
        let step = seconds(r.rind)!, gflop = r.rind["gflop_per_step"] as! Double
        let rindRSS = Double(r.rind["peak_rss_bytes"] as! Int) / 1_048_576
        let peak = r.rind["product_peak_gflops"] as! Double
        let held = Double((r.rind["weight_bytes"] as? Int ?? 0) + (r.rind["workspace_bytes"] as? Int ?? 0)) / 1_048_576
        var line = String(format: "| %@ | %d | %.4f | %.1f | %.1f | %.1f | %.0f%% | %.0f | %.0f |", r.config, r.batch, step, gflop,
                          gflop / step, peak, 100 * gflop / step / peak, rindRSS, held)
        for (enabled, other) in [(onnx != nil, r.ort), (torch != nil, r.torch)] where enabled {
            if let median = other.median, let best = other.fastest {
                line += String(format: " %.4f | %.0f | %.2f |", median, other.peakRSS ?? 0, step / median)
                if lockstepped { line += String(format: " %.2f |", EngineFigures.median(pairedRatios(r.rindBursts, other.bursts)) ?? .nan) }
                line += String(format: " %.2f |", r.rindFastest / best)
            } else {
                line += lockstepped ? " - | - | - | - | - |" : " - | - | - | - |"
            }
        }
        return line
    }

    /// One (config, batch) as --interleave rows runs it: per round rind's row, then ONNX Runtime's,
    /// then torch's, each a process of its own from start to end.
    private func roundsRow(config: String, batch: Int, environment: [String: String]) throws -> ComparedRow {
        var rindRounds: [[String: Any]] = [], ortRounds: [[String: Any]] = [], torchRounds: [[String: Any]] = []
        for _ in 0..<rounds {
            rindRounds.append(try child(config: config, batch: batch, environment: environment))
            if let onnx, let line = try runPython(onnx, script: "bench_onnx.py", config: config, batch: batch,
                                                  environment: environment) {
                ortRounds.append(line)
            }
            if let torch, let line = try runPython(torch, script: "bench_torch.py", config: config, batch: batch,
                                                   environment: environment) {
                torchRounds.append(line)
            }
        }
        let rind = rindRounds.sorted { seconds($0)! < seconds($1)! }[rindRounds.count / 2]
        return ComparedRow(config: config, batch: batch, rind: rind, rindRuns: rindRounds,
                           rindFastest: EngineFigures(rindRounds).fastest!, rindBursts: [],
                           ort: EngineFigures(ortRounds), torch: EngineFigures(torchRounds))
    }

    /// The environment of every row's process: this one's, plus the CPUID mask when --cpuid-mask
    /// is given (librind-cpuid-mask.so, built beside rind, preloaded).
    private func rowEnvironment() throws -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        guard let cpuidMask else { return environment }
        let library = APIServer.executableURL().deletingLastPathComponent()
            .appendingPathComponent("librind-cpuid-mask.so").path
        guard FileManager.default.fileExists(atPath: library) else {
            throw CommandLineError(message: "--cpuid-mask: no \(library) (build it: swift build -c release --product rind-cpuid-mask)")
        }
        environment["LD_PRELOAD"] = [library, environment["LD_PRELOAD"]].compactMap { $0 }.joined(separator: " ")
        environment["RIND_CPUID_MASK"] = cpuidMask
        return environment
    }

    private func seconds(_ row: [String: Any]) -> Double? { row["seconds_per_step"] as? Double }

    /// /proc/cpuinfo's first "model name", or "unknown".
    private func cpuModelName() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let colon = line.firstIndex(of: ":") else { return "unknown" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }

    /// One (config, batch) row, run in this (child) process; prints one JSON line.
    private func runRow(_ spec: String) throws {
        let parts = spec.split(separator: ":")
        guard parts.count == 2, let batch = Int(parts[1]) else { throw CommandLineError(message: "--row must be CONFIG:BATCH") }
        let config = try loadConfig(String(parts[0]))
        let network = RINNetwork(config: config, randomSeed: 0)
        let checkpoint = RINCheckpoint(name: String(parts[0]), directory: URL(fileURLWithPath: configsDir), network: network)
        var parameters = SamplingParameters.defaults(for: config)
        parameters.count = batch
        parameters.guidance = 0
        parameters.sampler = .ddim
        parameters.schedule = .cosine
        // A row times warmup + repeats steps of one run; a lockstep row as many as its bursts take,
        // from runs of 50 steps (the Python rows cycle through 50 as well), each run made before the
        // clock of its first step starts.
        parameters.steps = lockstep ? 50 : warmup + repeats
        parameters.seed = 1
        var run = try SamplingRun(checkpoint: checkpoint, parameters: parameters)
        func timedStep() throws -> Double {
            if run.isFinished { run = try SamplingRun(checkpoint: checkpoint, parameters: parameters) }
            let start = DispatchTime.now().uptimeNanoseconds
            run.step()
            return Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        }
        var times: [Double] = []
        if lockstep {
            times = try LockstepRow.serve(warmup: warmup, timedStep)
        } else {
            for k in 0..<(warmup + repeats) {
                let elapsed = try timedStep()
                if k >= warmup { times.append(elapsed) }
            }
        }
        let median = EngineFigures.median(times)!
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        // After the RSS reading, so the 48 MB of operands do not count as the model's memory.
        let peak = productPeak()
        let parametersCount = RINNetwork.tensorShapes(for: config).reduce(0) { $0 + $1.shape.reduce(1, *) }
        let result: [String: Any] = [
            "config": String(parts[0]), "batch": batch, "threads": BLASThreads.current, "matmul": MatmulBackend.current.rawValue,
            "kernels": KernelISA.current.description,
            "seconds_per_step": median, "min_seconds": times.min()!,
            "gflop_per_step": RINNetwork.flopsPerImage(config) * Double(batch) / 1e9,
            "peak_rss_bytes": Int(usage.ru_maxrss) * 1024, "parameters": parametersCount,
            "product_peak_gflops": peak, "weight_bytes": network.weightBytes, "workspace_bytes": run.workspaceBytes,
            "tokens": config.tokenCount, "patch": config.patch.size,
        ]
        LockstepRow.write(result)
    }

    /// The scaling mode's model for an image side: ImageNet-64 official widths (D 512, L 768,
    /// 4 blocks of 4 layers, 16 heads), 256 latents, patch 4 up to 128 pixels and 8 above.
    static func scalingConfig(side: Int, base: RINConfig) -> RINConfig {
        var c = base
        c.image = .init(frames: 1, height: side, width: side, channels: 3)
        c.patch = .init(size: side <= 128 ? 4 : 8, frames: 1)
        c.latents.count = 256
        c.training?.notes = "rind bench --scaling: \(side)x\(side), random weights"
        return c
    }

    private func benchScaling() throws {
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 8 && $0 <= 2048 && $0 % 8 == 0 }) else {
            throw CommandLineError(message: "--sizes must be multiples of 8 in 8...2048")
        }
        _ = try loadConfig("imagenet64-official")
        print("rind bench --scaling: \(threadCount) thread(s), \(warmup) warm-up + \(repeats) timed steps (median), batch 1, random weights; ImageNet-64 official widths (D 512, L 768, 4 x 4 blocks), 256 latents, patch 4 up to 128 px, 8 above")
        print("CPU: \(cpuModelName()); \(MatmulBackend.summary)\n")
        print("| image | patch | tokens n | GFLOP/step | s/step | GFLOP/s | µs per pixel | peak RSS (MiB) | weights (MiB) | workspace (MiB) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for side in sizes {
            let r = try child(config: "scaling-\(side)", batch: 1, environment: ProcessInfo.processInfo.environment)
            let step = seconds(r)!, gflop = r["gflop_per_step"] as! Double
            let mib = { (key: String) in Double(r[key] as? Int ?? 0) / 1_048_576 }
            print(String(format: "| %d x %d | %d | %d | %.1f | %.3f | %.1f | %.2f | %.0f | %.0f | %.0f |", side, side,
                         r["patch"] as? Int ?? 0, r["tokens"] as? Int ?? 0, gflop, step, gflop / step,
                         step * 1e6 / Double(side * side), mib("peak_rss_bytes"), mib("weight_bytes"), mib("workspace_bytes")))
        }
    }

    func loadConfig(_ name: String) throws -> RINConfig {
        if name.hasPrefix("scaling-"), let side = Int(name.dropFirst("scaling-".count)) {
            return Bench.scalingConfig(side: side, base: try loadConfig("imagenet64-official"))
        }
        let path = URL(fileURLWithPath: configsDir).appendingPathComponent("\(name).json")
        guard let data = try? Data(contentsOf: path) else { throw CommandLineError(message: "no config \(path.path)") }
        return try RINConfig.decode(data, file: path.path)
    }

    /// One row in a child process of this executable, which chooses its own backend (as `--matmul`
    /// says) on the CPU it sees.
    private func child(config: String, batch: Int, environment: [String: String]) throws -> [String: Any] {
        _ = try loadConfig(config)  // fail early, with the file's own message
        let executable = APIServer.executableURL()   // argv[0] may be a bare name found on PATH
        let output = try runProcess(executable.path, ["bench", "--row", "\(config):\(batch)", "--threads", "\(threadCount)",
                                                     "--configs-dir", configsDir, "--warmup", "\(warmup)", "--repeats", "\(repeats)",
                                                     "--matmul", matmul], environment: environment)
        guard let line = output.split(separator: "\n").last,
              let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw CommandLineError(message: "row \(config) batch \(batch) printed no result")
        }
        return object
    }

    /// One row of Training/bench_torch.py or bench_onnx.py (their `--row CONFIG BATCH` child mode),
    /// on the same threads.
    private func runPython(_ python: String, script name: String, config: String, batch: Int,
                           environment: [String: String]) throws -> [String: Any]? {
        let output = try runProcess(python, pythonRowArguments(script: name, config: config, batch: batch),
                                    environment: environment)
        return output.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.last
    }

    /// The arguments of a row of Training/bench_torch.py or bench_onnx.py (`script`).
    func pythonRowArguments(script name: String, config: String, batch: Int) -> [String] {
        let script = URL(fileURLWithPath: configsDir).deletingLastPathComponent().appendingPathComponent(name).path
        var arguments = [script, "--row", config, "\(batch)", "--threads", "\(threadCount)",
                         "--warmup", "\(warmup)", "--repeats", "\(repeats)"]
        if name == "bench_onnx.py" { arguments += ["--spinning", onnxSpinning] }
        return arguments
    }

    private func runProcess(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        do { try process.run() } catch { throw CommandLineError(message: "cannot run \(executable): \(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CommandLineError(message: "\(executable) \(arguments.prefix(3).joined(separator: " ")) exited with status \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Best of three 2048^3 products on the current matrix backend, GFLOP/s: on `packed` rind's
    /// micro-kernels with b packed as a 2048 x 2048 weight (what the model's products run on; an
    /// sgemm there would time oneDNN or OpenBLAS instead, which the model does not use), else sgemm.
    private func productPeak() -> Double {
        let n = 2048
        let a = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
        let b = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        for i in 0..<(n * n) { a[i] = Float(i % 7) * 0.1; b[i] = Float(i % 5) * 0.1 }
        var product = { sgemm(c, a, b, n, n, n) }
        let packed = MatmulBackend.current == .packed
            ? UnsafeMutablePointer<Float>.allocate(capacity: PackedLinearWeight.floatCount(inputs: n, outputs: n)) : nil
        defer { packed?.deallocate() }
        if let packed {
            let weight = PackedLinearWeight(packing: b, inputs: n, outputs: n, into: packed)
            product = { weight.apply(c, ldOut: n, a, ldInp: n, bias: nil, rows: n, mode: .store) }
        }
        product()  // warm-up: thread pool, page faults
        var best = Double.infinity
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            product()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
        }
        return 2 * Double(n * n * n) / best / 1e9
    }
}

/// One (config, batch) of the comparison: rind's row (the median round's JSON, or the lockstep
/// row's), every run of it, its fastest step, the median step of each of its timed bursts in order
/// (lockstep only), and the other engines' figures.
struct ComparedRow {
    let config: String
    let batch: Int
    let rind: [String: Any]
    let rindRuns: [[String: Any]]
    let rindFastest: Double
    let rindBursts: [Double]
    let ort: EngineFigures
    let torch: EngineFigures
}

/// An engine's figures for one row (config, batch), from the JSON lines of its rounds (or of its
/// one lockstep run, with its bursts); all nil when it was not run or printed nothing.
struct EngineFigures {
    /// Median seconds per step over the rounds.
    let median: Double?
    /// The largest peak RSS of the rounds, MiB.
    let peakRSS: Double?
    /// The fastest single step of any round: noise from other work on the cores only adds time, so
    /// the ratio of fastest steps is the less noisy second view of a shared machine.
    let fastest: Double?
    /// The JSON lines the rounds printed.
    let runs: [[String: Any]]
    /// The median step of each timed burst in order, when the engines took turns; else empty.
    let bursts: [Double]

    init(_ rounds: [[String: Any]], bursts: [Double] = []) {
        median = Self.median(rounds.compactMap { $0["seconds_per_step"] as? Double })
        peakRSS = rounds.compactMap { $0["peak_rss_bytes"] as? Int }.max().map { Double($0) / 1_048_576 }
        fastest = rounds.compactMap { $0["min_seconds"] as? Double }.min()
        runs = rounds
        self.bursts = bursts
    }

    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let v = values.sorted()
        return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
    }
}

/// a[i] / b[i] for the bursts both engines ran.
func pairedRatios(_ a: [Double], _ b: [Double]) -> [Double] { zip(a, b).map { $0 / $1 } }
