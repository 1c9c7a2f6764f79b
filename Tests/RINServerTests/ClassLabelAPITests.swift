import Foundation
import Logging
import RINImage
import RINJobs
import RINModel
import RINServer
import RINTestSupport
import XCTest

/// Classes as users type them, over HTTP: ImageNet ids, names and synonyms on a model whose classes
/// live in the imagenet-1k label space (the real table that ships in checkpoints/imagenet64), the
/// errors for classes the model lacks and for ambiguous names, and the default model.
final class ClassLabelAPITests: XCTestCase {
    var server: APIServer!
    var service: JobService!
    var stateDirectory: URL!
    var port: Int { server.port }

    /// A tiny random network whose three classes are ImageNet's golden retriever, tabby and crane
    /// (the bird), with the real 1,000-class table beside its config.
    static func imagenetTiny() throws -> RINCheckpoint {
        let directory = Fixtures.temporaryDirectory("rind-imagenet-tiny").appendingPathComponent("imagenet-tiny")
        var config = try RINCheckpoint.load(from: TestProject.tinyCheckpoint).config
        config.classes = .init(count: 3, names: ["golden retriever", "tabby", "crane"], nullClass: true,
                               labelSpace: .init(name: "imagenet-1k", ids: [207, 281, 134],
                                                 table: "imagenet-1k-classes.tsv"))
        try RINCheckpoint.writeRandom(config: config, to: directory, seed: 5)
        try FileManager.default.copyItem(
            at: TestProject.root.appendingPathComponent("checkpoints/imagenet64/imagenet-1k-classes.tsv"),
            to: directory.appendingPathComponent("imagenet-1k-classes.tsv"))
        return try RINCheckpoint.load(from: directory)
    }

    override func setUpWithError() throws {
        MetricsBackend.bootstrap()
        stateDirectory = Fixtures.temporaryDirectory("rind-class-api")
        var configuration = APIServer.Configuration()
        configuration.port = 0
        var logger = Logger(label: "rind.test")
        logger.logLevel = .warning
        server = try APIServer(configuration: configuration, logger: logger)
        // The job service's first model is the default one (rind serve --default-model).
        let models = [try Self.imagenetTiny(), try RINCheckpoint.load(from: TestProject.tinyCheckpoint)]
        service = try JobService(configuration: .init(stateDirectory: stateDirectory, workers: 1, previewEvery: 0),
                                 models: models, encoder: PNGImageEncoder(), logger: logger)
        server.attach(service)
    }

    override func tearDown() {
        server.stop()
        service.drain(deadline: .zero)
        try? FileManager.default.removeItem(at: stateDirectory)
    }

    func submit(_ query: String) throws -> HTTPResult {
        try http("POST", port, "/generate?\(query)")
    }

    func params(_ result: HTTPResult) -> [String: Any] {
        result.json["params"] as? [String: Any] ?? [:]
    }

    func testImageNetIdsNamesAndSynonymsReachTheDefaultModel() throws {
        for (query, label) in [("class=207", "id"), ("class=golden%20retriever", "name"),
                               ("class=Golden_Retriever", "underscores, capitals"), ("class=GOLDEN+RETRIEVER", "plus as space")] {
            let result = try submit(query + "&steps=2&seed=3")
            XCTAssertEqual(result.status, 202, "\(label): \(result.text)")
            XCTAssertEqual(result.json["model"] as? String, "imagenet-tiny", label)
            XCTAssertEqual(params(result)["class"] as? Int, 207, label)
            XCTAssertEqual(params(result)["class_name"] as? String, "golden retriever", label)
        }
        let tabby = try submit("class=tabby%20cat&steps=2")
        XCTAssertEqual(params(tabby)["class"] as? Int, 281)
        // A JSON body reads the same way.
        let body = try http("POST", port, "/generate", headers: ["Content-Type": "application/json"],
                            body: Array(#"{"class": "golden_retriever", "steps": 2}"#.utf8))
        XCTAssertEqual(body.status, 202, body.text)
        XCTAssertEqual(params(body)["class"] as? Int, 207)

        // The job runs on the ImageNet model and its PNG decodes at the model's size.
        let id = try XCTUnwrap(try submit("class=207&steps=2&seed=9").json["id"] as? String)
        var status = ""
        try poll {
            status = try http("GET", port, "/jobs/\(id)").json["status"] as? String ?? ""
            return ["succeeded", "failed", "canceled"].contains(status)
        }
        XCTAssertEqual(status, "succeeded")
        let image = try http("GET", port, "/jobs/\(id)/image.png")
        XCTAssertEqual(image.status, 200)
        let decoded = try PNG.decode(Data(image.body))
        let config = service.defaultModel.config
        XCTAssertEqual([decoded.width, decoded.height], [config.image.width, config.image.height])
    }

    func testClassesTheModelLacksAreNamed() throws {
        let tench = try submit("class=0")
        assertProblem(tench, status: 400, parameter: "class")
        XCTAssertEqual(tench.json["detail"] as? String,
                       "ImageNet class 0 (tench) is not one of the 3 classes of model 'imagenet-tiny'; the model's classes are listed by GET /models")
        let byName = try submit("class=Tinca_tinca")
        assertProblem(byName, status: 400, parameter: "class")
        XCTAssertTrue((byName.json["detail"] as? String ?? "").hasPrefix("ImageNet class 0 (tench) is not one of"), byName.text)
        let beyond = try submit("class=1000")
        assertProblem(beyond, status: 400, parameter: "class")
        XCTAssertTrue((beyond.json["detail"] as? String ?? "").hasPrefix("ImageNet has no class 1000"), beyond.text)
        let unknown = try submit("class=unicorn")
        assertProblem(unknown, status: 400, parameter: "class")
        XCTAssertTrue((unknown.json["detail"] as? String ?? "").contains("GET /models"), unknown.text)
    }

    func testAmbiguousNamesListTheCandidates() throws {
        let crane = try submit("class=crane")
        assertProblem(crane, status: 400, parameter: "class")
        XCTAssertEqual(crane.json["detail"] as? String,
                       "class 'crane' is ambiguous in ImageNet: it names 134 (crane) or 517 (crane, not in this model); give the id")
        let maillot = try submit("class=maillot")
        assertProblem(maillot, status: 400, parameter: "class")
        let detail = maillot.json["detail"] as? String ?? ""
        XCTAssertTrue(detail.contains("638 (maillot") && detail.contains("639 (maillot [tank suit]"), detail)
        // The id picks one.
        XCTAssertEqual(try submit("class=134&steps=2").status, 202)
    }

    func testOtherModelsKeepTheirOwnIdsAndModelsListsIds() throws {
        let tiny = try submit("model=tiny&class=1&steps=2")
        XCTAssertEqual(tiny.status, 202, tiny.text)
        XCTAssertEqual(params(tiny)["class"] as? Int, 1)
        let outside = try submit("model=tiny&class=207")
        assertProblem(outside, status: 400, parameter: "class")
        XCTAssertTrue((outside.json["detail"] as? String ?? "").hasPrefix("class 207 is out of range: model 'tiny'"), outside.text)

        let models = try http("GET", port, "/models").json
        XCTAssertEqual(models["default_model"] as? String, "imagenet-tiny")
        let list = try XCTUnwrap(models["models"] as? [[String: Any]])
        XCTAssertEqual(list.map { $0["name"] as? String }, ["imagenet-tiny", "tiny"])
        XCTAssertEqual(list.map { $0["default"] as? Bool }, [true, false])
        let classes = try XCTUnwrap(list[0]["classes"] as? [String: Any])
        XCTAssertEqual(classes["label_space"] as? String, "imagenet-1k")
        XCTAssertEqual(classes["ids"] as? [Int], [207, 281, 134])
        XCTAssertEqual(classes["names"] as? [String], ["golden retriever", "tabby", "crane"])
        let tinyClasses = try XCTUnwrap(list[1]["classes"] as? [String: Any])
        XCTAssertTrue(tinyClasses["label_space"] is NSNull)
        XCTAssertEqual((tinyClasses["ids"] as? [Int])?.count, tinyClasses["count"] as? Int)
    }
}
