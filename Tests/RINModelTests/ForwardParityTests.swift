import Foundation
import RINModel
import RINTensor
import RINTestSupport
import XCTest

/// Parity of the forward pass against the PyTorch reference (Tests/Fixtures/parity/*/forward.*):
/// within 1e-4 of the output scale max|ref|.
final class ForwardParityTests: XCTestCase {
    func testForwardMatchesPyTorch() throws {
        try ComputePath.forEach { path in try forwardMatchesPyTorch(path) }
    }

    func forwardMatchesPyTorch(_ path: ComputePath) throws {
        for model in parityModels {
            let directory = TestProject.fixtures.appendingPathComponent("parity/\(model)")
            let checkpoint = try RINCheckpoint.load(from: directory)
            let tensors = try SafeTensorsReader.read(directory.appendingPathComponent("forward.safetensors"))
            let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("forward.json"))) as! [String: Any]
            let batch = meta["batch"] as! Int
            let classList = meta["class"] as? [Any] ?? []
            let classes: [Int]? = checkpoint.config.classes.count > 0 ? classList.map { $0 as! Int } : nil
            let x = tensors["x"]!.values, gamma = tensors["gamma"]!.values
            for (zPrev, suffix) in [(tensors["z_prev"]!.values as [Float]?, ""), (nil, "_zero_prev")] {
                let (prediction, latents) = runForward(checkpoint.network, x: x, gamma: gamma, classes: classes,
                                                       latentsIn: zPrev, batch: batch)
                for (name, got) in [("prediction" + suffix, prediction), ("z" + suffix, latents)] {
                    let reference = tensors[name]!.values
                    let scale = reference.map(abs).max()!
                    let diff = maxAbsDiff(got, reference)
                    print("parity forward [\(path)] \(model) \(name): max|diff| = \(diff), max|ref| = \(scale)")
                    XCTAssertLessThanOrEqual(diff, 1e-4 * scale, "\(model) \(name) [\(path)]")
                }
            }
        }
    }
}
