import Foundation
import RINTestSupport
import XCTest

/// The bundled video model as a user meets it: `curl -X POST '127.0.0.1:8080/generate?model=cifar10-video&class=horse'`
/// ends in an animated PNG of the model's 8 frames of 32x32, and a contact sheet of them.
extension BundledModelTests {
    func testTheVideoModelMakesAnAnimatedPNGOfItsFrames() throws {
        let base = try startDaemon()
        let models = try XCTUnwrap(try request("GET", base + "/models").json["models"] as? [[String: Any]])
        let video = try XCTUnwrap(models.first { $0["name"] as? String == "cifar10-video" })
        XCTAssertEqual(video["kind"] as? String, "video")
        XCTAssertEqual((video["image"] as? [String: Any])?["frames"] as? Int, 8)
        let fps = try XCTUnwrap(video["fps"] as? Int)

        let submitted = try request("POST", base + "/generate?model=cifar10-video&class=horse&steps=2")
        XCTAssertEqual(submitted.status, 202, submitted.text)
        XCTAssertEqual((submitted.json["params"] as? [String: Any])?["class"] as? Int, 7)
        let id = try XCTUnwrap(submitted.json["id"] as? String)
        XCTAssertEqual(try waitForEnd(base, id), "succeeded")

        let clip = try request("GET", base + "/jobs/\(id)/image.png").body
        let chunks = try Self.chunks(clip)
        XCTAssertEqual(chunks.first?.type, "IHDR")
        XCTAssertEqual(Self.u32(chunks[0].data, 0), 32)
        XCTAssertEqual(Self.u32(chunks[0].data, 4), 32)
        let actl = try XCTUnwrap(chunks.first { $0.type == "acTL" })
        XCTAssertEqual(Self.u32(actl.data, 0), 8, "acTL: the model's frame count")
        let controls = chunks.filter { $0.type == "fcTL" }
        XCTAssertEqual(controls.count, 8)
        XCTAssertTrue(controls.allSatisfy { Array($0.data[20..<24]) == [0, 1, 0, UInt8(fps)] }, "1/fps s per frame")
        XCTAssertEqual(chunks.filter { $0.type == "fdAT" }.count, 7, "one fdAT per frame after the first (small frames)")

        let sheet = try Self.chunks(try request("GET", base + "/jobs/\(id)/frames.png").body)
        XCTAssertEqual(Self.u32(sheet[0].data, 0), 8 * 32 + 7 * 2, "8 frames in a row, 2 pixels apart")
        XCTAssertEqual(Self.u32(sheet[0].data, 4), 32)
        XCTAssertFalse(sheet.contains { $0.type == "acTL" }, "the contact sheet is a still")
    }

    func testSampleWritesAClipAsAnAnimatedPNG() throws {
        let output = scratch.appendingPathComponent("horse.png")
        let model = TestProject.root.appendingPathComponent("checkpoints/cifar10-video").path
        let sampled = try runRind(["sample", "--checkpoint", model, "--class", "horse", "--steps", "2", "--apng",
                                   "-o", output.path])
        XCTAssertEqual(sampled.status, 0, sampled.stderr)
        let chunks = try Self.chunks(try Data(contentsOf: output))
        XCTAssertEqual(Self.u32(try XCTUnwrap(chunks.first { $0.type == "acTL" }).data, 0), 8)
        let image = try runRind(["sample", "--checkpoint", TestProject.root.appendingPathComponent("checkpoints/cifar10").path,
                                 "--steps", "1", "--apng", "-o", output.path])
        XCTAssertEqual(image.status, 2)
        XCTAssertTrue(image.stderr.contains("--apng needs a video model"), image.stderr)
    }

    /// PNG chunks (type, data) of `data`; throws on a bad signature or a chunk past the end.
    static func chunks(_ data: Data) throws -> [(type: String, data: [UInt8])] {
        let bytes = [UInt8](data)
        guard bytes.count > 8, Array(bytes[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else {
            throw CocoaError(.fileReadCorruptFile)
        }
        var result: [(type: String, data: [UInt8])] = []
        var offset = 8
        while offset + 12 <= bytes.count {
            let length = Int(u32(bytes, offset))
            guard offset + 12 + length <= bytes.count else { throw CocoaError(.fileReadCorruptFile) }
            result.append((String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self),
                           Array(bytes[(offset + 8)..<(offset + 8 + length)])))
            offset += 12 + length
        }
        return result
    }

    static func u32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }
}
