import Foundation
import RINImage
import RINTestSupport
import XCTest

/// Video models through the real server (tiny-video fixture: 4 frames of 8x8, 5 fps): the clip as
/// APNG (decoded by rind's reader and by Pillow), its contact sheet, frame rates, previews and the
/// stream, and what image models answer on the clip routes.
final class ClipAPITests: XCTestCase {
    private var server: TestServer!
    private var port: Int { server.port }

    override func setUpWithError() throws {
        server = try TestServer(previewEvery: 1, video: true)
    }

    override func tearDown() {
        server?.shutdown()
    }

    private func finishedClip(_ query: String) throws -> String {
        let id = try server.submit(query)["id"] as! String
        try server.waitFor(id, ["succeeded"])
        return id
    }

    func testModelsSayWhichMakeClips() throws {
        let models = try http("GET", port, "/models").json["models"] as! [[String: Any]]
        XCTAssertEqual(models.map { $0["name"] as? String }, ["tiny", "tiny-video"])
        XCTAssertEqual(models[0]["kind"] as? String, "image")
        XCTAssertTrue(models[0]["fps"] is NSNull)
        XCTAssertEqual(models[1]["kind"] as? String, "video")
        XCTAssertEqual(models[1]["fps"] as? Int, 5)
        XCTAssertEqual((models[1]["image"] as? [String: Any])?["frames"] as? Int, 4)
    }

    func testAClipIsAnAPNGOfTheModelsFramesAndRate() throws {
        let id = try finishedClip("model=tiny-video&class=green&steps=3&seed=5")
        let job = try server.job(id)
        let links = job["links"] as! [String: Any]
        XCTAssertEqual(links["frames"] as? [String], ["/jobs/\(id)/frames.png?i=0"])

        let clip = try http("GET", port, "/jobs/\(id)/image.png")
        XCTAssertEqual(clip.status, 200)
        XCTAssertEqual(clip.header("content-type"), "image/apng")
        let animation = try APNG.frames(of: Data(clip.body))
        XCTAssertEqual(animation.frames.count, 4)
        XCTAssertTrue(animation.frames.allSatisfy { ($0.width, $0.height, $0.channels) == (8, 8, 3) })
        XCTAssertEqual(animation.delays, [0.2, 0.2, 0.2, 0.2], "the model's 5 fps")
        XCTAssertEqual(animation.plays, 0)
        XCTAssertNotEqual(animation.frames[0], animation.frames[3], "a clip's frames differ")

        // The contact sheet holds the same frames, 2 pixels apart.
        let sheetResult = try http("GET", port, "/jobs/\(id)/frames.png")
        XCTAssertEqual(sheetResult.header("content-type"), "image/png")
        let sheet = try PNG.decode(Data(sheetResult.body))
        XCTAssertEqual(sheet, try ImageGrid.contactSheet(animation.frames))
        XCTAssertEqual(sheet.width, 4 * 8 + 3 * 2)

        // Pillow decodes the served APNG to the same frames.
        let python = try testPython()
        let directory = Fixtures.temporaryDirectory("rind-clip")
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data(clip.body).write(to: directory.appendingPathComponent("clip.png"))
        try Data(animation.frames.flatMap(\.pixels)).write(to: directory.appendingPathComponent("clip.raw"))
        let (status, output) = try runProcess(python, [
            TestProject.root.appendingPathComponent("scripts/check-apng.py").path,
            directory.appendingPathComponent("clip.png").path, directory.appendingPathComponent("clip.raw").path,
            "4", "8", "8", "3", "5",
        ])
        XCTAssertEqual(status, 0, output)

        // fps from the request changes only the delays.
        let fast = try http("GET", port, "/jobs/\(id)/image.png?fps=20")
        let retimed = try APNG.frames(of: Data(fast.body))
        XCTAssertEqual(retimed.frames, animation.frames)
        XCTAssertEqual(retimed.delays, [0.05, 0.05, 0.05, 0.05])
        for bad in ["0", "51", "2.5", "fast"] {
            assertProblem(try http("GET", port, "/jobs/\(id)/image.png?fps=\(bad)"), status: 400, parameter: "fps")
        }
        assertProblem(try http("GET", port, "/jobs/\(id)/frames.png?i=1"), status: 400, parameter: "i")
    }

    func testTheSameSeedGivesTheSameClipAndAnotherSeedAnother() throws {
        let a = try finishedClip("model=tiny-video&class=red&steps=2&seed=9")
        let b = try finishedClip("model=tiny-video&class=red&steps=2&seed=9")
        let c = try finishedClip("model=tiny-video&class=red&steps=2&seed=10")
        let clip = { (id: String) in try http("GET", self.port, "/jobs/\(id)/image.png").body }
        XCTAssertEqual(try clip(a), try clip(b))
        XCTAssertNotEqual(try clip(a), try clip(c))
    }

    func testPreviewsAndTheStreamShowEveryFrame() throws {
        let blocker = try server.startBlocker()
        let id = try server.submit("model=tiny-video&class=blue&steps=3&seed=2&preview_every=1&n=2")["id"] as! String
        let stream = try openStream(port, "/jobs/\(id)/stream")
        XCTAssertEqual(stream.status, 200)
        _ = try http("POST", port, "/jobs/\(blocker)/cancel")
        server.gate.open()
        var parts: [[UInt8]] = []
        while let part = readPart(stream.reader, boundary: "rind-preview-frame") {
            XCTAssertEqual(part.headers["content-type"], "image/png")
            parts.append(part.body)
        }
        XCTAssertGreaterThanOrEqual(parts.count, 2, "at least one preview, then the final contact sheet")
        // Previews: one contact sheet per clip, one below the other (n = 2).
        for part in parts.dropLast() {
            let preview = try PNG.decode(Data(part))
            XCTAssertEqual(preview.width, 4 * 8 + 3 * 2)
            XCTAssertEqual(preview.height, 2 * 8 + 2)
        }
        // The last part is the first clip's contact sheet.
        XCTAssertEqual(parts.last, try http("GET", port, "/jobs/\(id)/frames.png").body)
        let second = try APNG.frames(of: Data(try http("GET", port, "/jobs/\(id)/image.png?i=1").body))
        XCTAssertEqual(second.frames.count, 4)
    }

    func testImageModelsRefuseTheClipParameters() throws {
        let id = try finishedClip("model=tiny&class=red&steps=2&seed=1")
        XCTAssertEqual((try server.job(id)["links"] as! [String: Any])["frames"] as? [String], [])
        let image = try http("GET", port, "/jobs/\(id)/image.png")
        XCTAssertEqual(image.header("content-type"), "image/png")
        XCTAssertThrowsError(try APNG.frames(of: Data(image.body)))
        assertProblem(try http("GET", port, "/jobs/\(id)/image.png?fps=8"), status: 400, parameter: "fps")
        let frames = try http("GET", port, "/jobs/\(id)/frames.png")
        assertProblem(frames, status: 404)
        XCTAssertEqual(frames.json["type"] as? String, "urn:rind:problem:not-a-clip")
        assertProblem(try http("GET", port, "/jobs/0123456789abcdef/frames.png"), status: 404)
    }
}
