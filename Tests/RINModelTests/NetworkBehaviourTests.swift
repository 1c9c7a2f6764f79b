import Foundation
import RINModel
import XCTest

/// Shape and behaviour of the network on tiny configs with random weights.
final class NetworkBehaviourTests: XCTestCase {
    func inputs(_ c: RINConfig, batch: Int, seed: UInt64) -> (x: [Float], z: [Float]) {
        (randomFloats(batch * c.imageValues, seed: seed, scale: 2),
         randomFloats(batch * c.latents.count * c.latents.dim, seed: seed + 1, scale: 3))
    }

    func testZeroLN0ModelIgnoresLatentsIn() {
        let c = tinyConfig()
        let network = RINNetwork(config: c, randomSeed: 2, zeroLatentConditioning: true)
        let (x, z) = inputs(c, batch: 2, seed: 10)
        let with = runForward(network, x: x, gamma: [0.3, 0.8], classes: [0, 3], latentsIn: z, batch: 2)
        let without = runForward(network, x: x, gamma: [0.3, 0.8], classes: [0, 3], latentsIn: nil, batch: 2)
        XCTAssertEqual(with.prediction, without.prediction)
        XCTAssertEqual(with.latents, without.latents)
    }

    func testLatentsInMattersWithNonZeroLN0() {
        let c = tinyConfig()
        let network = RINNetwork(config: c, randomSeed: 2)
        let (x, z) = inputs(c, batch: 1, seed: 11)
        let with = runForward(network, x: x, gamma: [0.5], classes: [1], latentsIn: z, batch: 1)
        let without = runForward(network, x: x, gamma: [0.5], classes: [1], latentsIn: nil, batch: 1)
        XCTAssertGreaterThan(maxAbsDiff(with.prediction, without.prediction), 1e-3)
    }

    func testBatchEqualsSeparatePassesAndIsDeterministic() {
        for c in [tinyConfig(), tinyConfig(classes: 0), tinyConfig(frames: 2, prediction: .eps)] {
            let network = RINNetwork(config: c, randomSeed: 4)
            let (x, z) = inputs(c, batch: 3, seed: 12)
            let gamma: [Float] = [0.1, 0.5, 0.999]
            let classes: [Int]? = c.classes.count > 0 ? [0, 2, 3] : nil
            let batched = runForward(network, x: x, gamma: gamma, classes: classes, latentsIn: z, batch: 3)
            let again = runForward(network, x: x, gamma: gamma, classes: classes, latentsIn: z, batch: 3)
            XCTAssertEqual(batched.prediction, again.prediction)
            XCTAssertEqual(batched.latents, again.latents)
            XCTAssertFalse(batched.prediction.contains { !$0.isFinite })
            let iv = c.imageValues, lv = c.latents.count * c.latents.dim
            for b in 0..<3 {
                let single = runForward(network, x: Array(x[(b * iv)..<((b + 1) * iv)]), gamma: [gamma[b]],
                                        classes: classes.map { [$0[b]] }, latentsIn: Array(z[(b * lv)..<((b + 1) * lv)]), batch: 1)
                XCTAssertLessThan(maxAbsDiff(single.prediction, Array(batched.prediction[(b * iv)..<((b + 1) * iv)])), 1e-5)
                XCTAssertLessThan(maxAbsDiff(single.latents, Array(batched.latents[(b * lv)..<((b + 1) * lv)])), 1e-5)
            }
        }
    }

    func testClassAndGammaChangeTheOutput() {
        let c = tinyConfig()
        let network = RINNetwork(config: c, randomSeed: 6)
        let (x, _) = inputs(c, batch: 1, seed: 13)
        let a = runForward(network, x: x, gamma: [0.5], classes: [0], latentsIn: nil, batch: 1)
        let b = runForward(network, x: x, gamma: [0.5], classes: [1], latentsIn: nil, batch: 1)
        let g = runForward(network, x: x, gamma: [0.6], classes: [0], latentsIn: nil, batch: 1)
        XCTAssertGreaterThan(maxAbsDiff(a.prediction, b.prediction), 1e-4)
        XCTAssertGreaterThan(maxAbsDiff(a.prediction, g.prediction), 1e-4)
    }

    func testSavedRandomCheckpointLoadsToTheSameNetwork() throws {
        let c = tinyConfig()
        let directory = temporaryDirectory()
        try RINCheckpoint.writeRandom(config: c, to: directory, seed: 9)
        let loaded = try RINCheckpoint.load(from: directory)
        let memory = RINNetwork(config: c, randomSeed: 9)
        let (x, z) = inputs(c, batch: 2, seed: 14)
        let a = runForward(loaded.network, x: x, gamma: [0.2, 0.7], classes: [3, 1], latentsIn: z, batch: 2)
        let b = runForward(memory, x: x, gamma: [0.2, 0.7], classes: [3, 1], latentsIn: z, batch: 2)
        XCTAssertEqual(a.prediction, b.prediction)
        XCTAssertEqual(a.latents, b.latents)
    }

    func testTensorListFollowsTheContract() {
        let c = tinyConfig()
        let shapes = RINNetwork.tensorShapes(for: c)
        let names = shapes.map(\.name)
        XCTAssertEqual(Set(names).count, names.count, "names are unique")
        let byName = Dictionary(uniqueKeysWithValues: shapes.map { ($0.name, $0.shape) })
        let (D, L, Ci) = (c.interface.dim, c.latents.dim, c.crossWidth)
        XCTAssertEqual(byName["class_embed.weight"], [c.classes.count + 1, L])
        XCTAssertEqual(byName["latents"], [c.latents.count - 2, L])
        XCTAssertEqual(byName["time_mlp.0.weight"], [L, L / 4])
        XCTAssertEqual(byName["blocks.1.read.attn.k.weight"], [Ci, D])
        XCTAssertEqual(byName["blocks.0.write.attn.q.weight"], [Ci, D])
        XCTAssertEqual(byName["blocks.0.write.ff.fc1.weight"], [c.interfaceHidden, D])
        XCTAssertEqual(byName["blocks.0.compute.0.attn.out.weight"], [L, L])
        XCTAssertEqual(byName["self_cond.out_norm.bias"], [L])
        XCTAssertEqual(byName["readout.weight"], [c.patchValues, D])
        let unconditional = Dictionary(uniqueKeysWithValues: RINNetwork.tensorShapes(for: tinyConfig(classes: 0)).map { ($0.name, $0.shape) })
        XCTAssertNil(unconditional["class_embed.weight"])
        XCTAssertEqual(unconditional["latents"], [c.latents.count - 1, L])
        // 23 outside the blocks (with a class embedding), 16 per read, compute layer and write
        XCTAssertEqual(names.count, 23 + c.blocks * (16 + 16 * c.layersPerBlock + 16))
    }

    func testFlopCountOfTheOfficialImageNet64Config() {
        // The ImageNet-64 configuration of the paper (Jabri, Fleet, Chen, "Scalable Adaptive
        // Computation for Iterative Generation", ICML 2023; Training/configs/imagenet64-official.json):
        // one sampling step at batch 1 is about 44 GFLOP by `RINNetwork.flopsPerImage`.
        let imagenet = RINConfig(
            image: .init(frames: 1, height: 64, width: 64, channels: 3), patch: .init(size: 4, frames: 1),
            interface: .init(dim: 512, heads: 16, mlpRatio: 4), latents: .init(count: 128, dim: 768, heads: 16, mlpRatio: 4),
            blocks: 4, layersPerBlock: 4, classes: .init(count: 1000, names: nil, nullClass: true), prediction: .v,
            training: nil, sampling: .init())
        let gflop = RINNetwork.flopsPerImage(imagenet) / 1e9
        XCTAssertEqual(gflop, 44.5, accuracy: 1)
        let parameters = RINNetwork.tensorShapes(for: imagenet).reduce(0) { $0 + $1.shape.reduce(1, *) }
        XCTAssertEqual(Double(parameters) / 1e6, 158, accuracy: 8, "the official ImageNet-64 configuration: ~158M parameters")
    }
}
