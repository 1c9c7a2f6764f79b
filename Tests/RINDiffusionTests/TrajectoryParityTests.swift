import Foundation
import RINDiffusion
import RINModel
import RINTestSupport
import XCTest

/// Parity of whole sampling runs against the PyTorch reference
/// (Tests/Fixtures/parity/*/trajectories.*): x_T exact, every step's x0 within 1e-3 for DDIM and
/// 2e-2 for DDPM (its first step divides by sqrt(g/g') ~ 1e-4, amplifying float32 rounding; see
/// Tests/Fixtures/README.md), final pixels within 2/255 (DDIM) or 2 (DDPM).
final class TrajectoryParityTests: XCTestCase {
    func testTrajectoriesMatchPyTorch() throws {
        for model in ["image-v-cond", "image-eps-uncond", "gray-x0", "video-v-cond"] {
            let directory = TestProject.fixtures.appendingPathComponent("parity/\(model)")
            let checkpoint = try RINCheckpoint.load(from: directory)
            let tensors = try SafeTensorsReader.read(directory.appendingPathComponent("trajectories.safetensors"))
            let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("trajectories.json"))) as! [String: Any]
            for run in meta["runs"] as! [[String: Any]] {
                let name = run["name"] as! String
                let seed = UInt64(run["seed_string"] as! String)!
                let parameters = SamplingParameters(
                    classIndex: run["class"] as? Int, seed: seed, steps: run["steps"] as! Int,
                    sampler: SamplerKind(rawValue: run["sampler"] as! String)!,
                    schedule: ScheduleKind(rawValue: run["schedule"] as! String)!,
                    guidance: Float(run["guidance"] as! Double), count: run["count"] as! Int,
                    carryLatents: run["carry_latents"] as! Bool)
                let sampling = try SamplingRun(checkpoint: checkpoint, parameters: parameters, fullSeedRange: true)
                XCTAssertEqual(sampling.currentSample(), tensors["\(name).x_start"]!.values, "\(model) \(name) x_start")
                let stepX0 = tensors["\(name).step_x0"]!.values
                let perStep = stepX0.count / parameters.steps
                let tolerance: Float = 1e-3
                var worst: Float = 0
                for (k, estimate) in runToEnd(sampling).enumerated() {
                    let diff = maxAbsDiff(estimate, Array(stepX0[(k * perStep)..<((k + 1) * perStep)]))
                    worst = max(worst, diff)
                    XCTAssertLessThanOrEqual(diff, tolerance, "\(model) \(name) step \(k)")
                }
                let pixels = sampling.estimate().flatMap { $0.pixels }.map(Float.init)
                let reference = referencePixels(tensors["\(name).pixels"]!, image: checkpoint.config.image)
                let pixelDiff = maxAbsDiff(pixels, reference)
                print("parity trajectory \(model) \(name): max|x0 diff| over steps = \(worst), max pixel diff = \(pixelDiff)")
                XCTAssertLessThanOrEqual(pixelDiff, 2, "\(model) \(name) pixels")
            }
        }
    }

    /// The fixture's (count, F, H, W, C) pixels laid out as ImagePixels lays them (frames side by side).
    func referencePixels(_ tensor: SafeTensorsWriter.Tensor, image: RINConfig.Image) -> [Float] {
        let F = image.frames, H = image.height, W = image.width, C = image.channels
        let count = tensor.values.count / (F * H * W * C)
        var out = [Float](repeating: 0, count: tensor.values.count)
        for i in 0..<count {
            let base = i * F * H * W * C
            for f in 0..<F { for y in 0..<H { for x in 0..<W { for c in 0..<C {
                out[base + (y * F * W + f * W + x) * C + c] = tensor.values[base + ((f * H + y) * W + x) * C + c]
            } } } }
        }
        return out
    }
}
