import Foundation
import RINDiffusion
import RINModel

/// A tiny class-conditional image config for behaviour tests (debug builds run numeric loops slowly).
func tinyConfig(classes: Int = 3, nullClass: Bool = true, prediction: RINConfig.Prediction = .v,
                frames: Int = 1) -> RINConfig {
    RINConfig(
        image: .init(frames: frames, height: 8, width: 6, channels: 3),
        patch: .init(size: 2, frames: 1),
        interface: .init(dim: 16, heads: 2, mlpRatio: 2),
        latents: .init(count: 5, dim: 24, heads: 3, mlpRatio: 2),
        blocks: 2, layersPerBlock: 1,
        classes: .init(count: classes, names: classes > 0 ? ["cat", "dog", "ship", "frog"].prefix(classes).map { $0 } : nil,
                       nullClass: classes > 0 && nullClass),
        prediction: prediction,
        training: .init(schedule: .init(kind: "sigmoid", start: -3, end: 3, tau: 0.9)),
        sampling: .init(steps: 4, sampler: "ddim", schedule: "cosine", guidance: 0))
}

/// An in-memory checkpoint with random weights.
func tinyCheckpoint(_ config: RINConfig = tinyConfig(), seed: UInt64 = 1, zeroLN0: Bool = false) -> RINCheckpoint {
    RINCheckpoint(name: "tiny", directory: URL(fileURLWithPath: "/nonexistent"),
                  network: RINNetwork(config: config, randomSeed: seed, zeroLatentConditioning: zeroLN0))
}

/// max |a - b|.
func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "maxAbsDiff: \(a.count) vs \(b.count) values")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// Runs a sampling run to the end; returns each step's x0 estimate.
func runToEnd(_ run: SamplingRun) -> [[Float]] {
    var estimates: [[Float]] = []
    while !run.isFinished {
        run.step()
        estimates.append(run.estimateFloats())
    }
    return estimates
}
