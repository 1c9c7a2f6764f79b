import Foundation
import RINModel

/// The parity model directories recorded by Training/record_fixtures.py.
let parityModels = ["image-v-cond", "image-eps-uncond", "gray-x0", "video-v-cond"]

/// A tiny class-conditional image config for shape and behaviour tests.
func tinyConfig(classes: Int = 3, nullClass: Bool = true, frames: Int = 1, prediction: RINConfig.Prediction = .v) -> RINConfig {
    RINConfig(
        image: .init(frames: frames, height: 8, width: 6, channels: 3),
        patch: .init(size: 2, frames: 1),
        interface: .init(dim: 16, heads: 2, mlpRatio: 2),
        latents: .init(count: 5, dim: 24, heads: 3, mlpRatio: 2),
        blocks: 2, layersPerBlock: 1,
        classes: .init(count: classes, names: classes > 0 ? (0..<classes).map { "c\($0)" } : nil,
                       nullClass: classes > 0 && nullClass),
        prediction: prediction,
        training: .init(schedule: .init(kind: "sigmoid", start: -3, end: 3, tau: 0.9)),
        sampling: .init(steps: 4, sampler: "ddim", schedule: "cosine", guidance: 0))
}

/// A fresh temporary directory.
func temporaryDirectory() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("rind-model-tests-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Deterministic pseudo-random floats in [-scale, scale).
func randomFloats(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return (Float(Double(z >> 11) * 0x1p-53) * 2 - 1) * scale
    }
}

/// max |a - b|.
func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "maxAbsDiff: \(a.count) vs \(b.count) values")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// Runs one forward pass of `network` over a batch; returns (prediction, latents).
func runForward(_ network: RINNetwork, x: [Float], gamma: [Float], classes: [Int]?, latentsIn: [Float]?,
                batch: Int) -> (prediction: [Float], latents: [Float]) {
    let c = network.config
    var prediction = [Float](repeating: .nan, count: batch * c.imageValues)
    var latents = [Float](repeating: .nan, count: batch * c.latents.count * c.latents.dim)
    let workspace = RINWorkspace(config: c, batch: batch)
    x.withUnsafeBufferPointer { xp in
        gamma.withUnsafeBufferPointer { gp in
            prediction.withUnsafeMutableBufferPointer { pp in
                latents.withUnsafeMutableBufferPointer { lp in
                    let classPointer = classes.map { cls -> UnsafeMutablePointer<Int> in
                        let p = UnsafeMutablePointer<Int>.allocate(capacity: cls.count)
                        p.initialize(from: cls, count: cls.count)
                        return p
                    }
                    defer { classPointer?.deallocate() }
                    if let latentsIn {
                        latentsIn.withUnsafeBufferPointer { zp in
                            network.forward(prediction: pp.baseAddress!, latentsOut: lp.baseAddress!, x: xp.baseAddress!,
                                            gamma: gp.baseAddress!, classes: classPointer.map { UnsafePointer($0) },
                                            latentsIn: zp.baseAddress!, batch: batch, workspace: workspace)
                        }
                    } else {
                        network.forward(prediction: pp.baseAddress!, latentsOut: lp.baseAddress!, x: xp.baseAddress!,
                                        gamma: gp.baseAddress!, classes: classPointer.map { UnsafePointer($0) },
                                        latentsIn: nil, batch: batch, workspace: workspace)
                    }
                }
            }
        }
    }
    return (prediction, latents)
}
