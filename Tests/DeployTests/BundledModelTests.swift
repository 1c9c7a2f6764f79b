import Foundation
import RINTestSupport
import XCTest

/// What a new user types first, on the built binary and the bundled checkpoints: `make run` serves
/// checkpoints/, and `curl -X POST '127.0.0.1:8080/generate?class=207'` reaches the ImageNet model
/// and ends in a 64x64 PNG; `rind sample` reads ImageNet ids and names the same way.
final class BundledModelTests: XCTestCase {
    var scratch: URL!
    var daemon: RindDaemon?

    override func setUpWithError() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: DeployTests.rindBinary.path),
                          "build the rind product first (scripts/test.sh does)")
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("rind-bundled-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        daemon?.stop()
        try? FileManager.default.removeItem(at: scratch)
    }

    // MARK: The daemon

    func testBareClass207GoesToTheImageNetModelAndEndsInA64PixelPNG() throws {
        let base = try startDaemon()
        let models = try request("GET", base + "/models").json
        XCTAssertEqual(models["default_model"] as? String, "imagenet64")
        let list = try XCTUnwrap(models["models"] as? [[String: Any]])
        let imagenet = try XCTUnwrap(list.first { $0["name"] as? String == "imagenet64" })
        XCTAssertEqual(imagenet["default"] as? Bool, true)
        let classes = try XCTUnwrap(imagenet["classes"] as? [String: Any])
        XCTAssertEqual(classes["count"] as? Int, 200)
        XCTAssertEqual(classes["label_space"] as? String, "imagenet-1k")
        let ids = try XCTUnwrap(classes["ids"] as? [Int])
        let names = try XCTUnwrap(classes["names"] as? [String])
        XCTAssertEqual(names[try XCTUnwrap(ids.firstIndex(of: 207))], "golden retriever")

        // The README's first command (with few steps, to keep the suite quick).
        let submitted = try request("POST", base + "/generate?class=207&steps=3&seed=1")
        XCTAssertEqual(submitted.status, 202, submitted.text)
        XCTAssertEqual(submitted.json["model"] as? String, "imagenet64")
        let params = try XCTUnwrap(submitted.json["params"] as? [String: Any])
        XCTAssertEqual(params["class"] as? Int, 207)
        XCTAssertEqual(params["class_name"] as? String, "golden retriever")
        let id = try XCTUnwrap(submitted.json["id"] as? String)
        XCTAssertEqual(try waitForEnd(base, id), "succeeded")
        let png = try request("GET", base + "/jobs/\(id)/image.png")
        XCTAssertEqual(png.status, 200)
        XCTAssertEqual(Array(png.body.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        XCTAssertEqual(Array(png.body[16..<24]), [0, 0, 0, 64, 0, 0, 0, 64], "IHDR is not 64 x 64")

        // Names, synonyms, classes the model lacks, ambiguous names, and CIFAR-10 by name.
        let byName = try request("POST", base + "/generate?class=Golden_Retriever&steps=1")
        XCTAssertEqual((byName.json["params"] as? [String: Any])?["class"] as? Int, 207, byName.text)
        let tench = try request("POST", base + "/generate?class=0")
        XCTAssertEqual(tench.status, 400)
        XCTAssertEqual(tench.json["detail"] as? String,
                       "ImageNet class 0 (tench) is not one of the 200 classes of model 'imagenet64'; the model's classes are listed by GET /models")
        let crane = try request("POST", base + "/generate?class=crane")
        XCTAssertEqual(crane.status, 400)
        XCTAssertTrue((crane.json["detail"] as? String ?? "").contains("134 (crane"), crane.text)
        XCTAssertTrue((crane.json["detail"] as? String ?? "").contains("517 (crane"), crane.text)
        let cifar = try request("POST", base + "/generate?model=cifar10&class=dog&steps=1")
        XCTAssertEqual(cifar.status, 202, cifar.text)
        XCTAssertEqual(cifar.json["model"] as? String, "cifar10")
        XCTAssertEqual((cifar.json["params"] as? [String: Any])?["class"] as? Int, 5)
    }

    func testDefaultModelFlagPicksAnotherModelAndRefusesAnUnknownOne() throws {
        let base = try startDaemon(["--default-model", "cifar10"])
        XCTAssertEqual(try request("GET", base + "/models").json["default_model"] as? String, "cifar10")
        let dog = try request("POST", base + "/generate?class=dog&steps=1")
        XCTAssertEqual(dog.json["model"] as? String, "cifar10", dog.text)
        daemon?.stop()

        let unknown = try runRind(["serve", "--checkpoints", TestProject.root.appendingPathComponent("checkpoints").path,
                                   "--port", "0", "--state-dir", scratch.appendingPathComponent("other").path,
                                   "--default-model", "imagenet1k"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("--default-model 'imagenet1k' is not a model"), unknown.stderr)
    }

    // MARK: rind sample

    func testSampleReadsImageNetIdsAndNames() throws {
        let output = scratch.appendingPathComponent("golden.png")
        // No --checkpoint: the default model, as the daemon's.
        let golden = try runRind(["sample", "--class", "golden_retriever", "--steps", "2", "-o", output.path])
        XCTAssertEqual(golden.status, 0, golden.stderr)
        XCTAssertTrue(golden.stderr.contains("sampling imagenet64"), golden.stderr)
        let png = try Data(contentsOf: output)
        XCTAssertEqual(Array(png[16..<24]), [0, 0, 0, 64, 0, 0, 0, 64])
        for (label, expected) in [("0", "ImageNet class 0 (tench) is not one of the 200 classes of model 'imagenet64'"),
                                  ("crane", "class 'crane' is ambiguous in ImageNet"),
                                  ("1000", "ImageNet has no class 1000")] {
            let refused = try runRind(["sample", "--class", label, "-o", output.path])
            XCTAssertEqual(refused.status, 2, refused.stderr)
            XCTAssertTrue(refused.stderr.contains(expected), "\(label): \(refused.stderr)")
            XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        }
    }

    // MARK: Helpers

    /// `rind serve` on the repository's checkpoints; returns the base URL once /readyz answers 200.
    func startDaemon(_ extra: [String] = []) throws -> String {
        let started = try RindDaemon(
            arguments: ["--checkpoints", TestProject.root.appendingPathComponent("checkpoints").path,
                        "--state-dir", scratch.appendingPathComponent("state").path,
                        "--workers", "1", "--threads", "1"] + extra,
            directory: scratch)
        daemon = started
        return started.base
    }

    func waitForEnd(_ base: String, _ id: String) throws -> String { try HTTP.waitForEnd(base, id) }

    func request(_ method: String, _ url: String) throws -> HTTP.Response { try HTTP.request(method, url) }
}
