import Foundation
import RINImage
import RINTestSupport
import XCTest

/// Animated PNG: the chunk layout APNG 1.0 requires (order, sequence numbers, CRCs), round trips
/// through rind's reader, and decoding by Pillow, an independent APNG decoder.
final class APNGTests: XCTestCase {
    private func pattern(count: Int, seed: UInt32) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }

    private func frames(_ count: Int, width: Int = 9, height: Int = 6, channels: Int = 3) throws -> [RasterImage] {
        try (0..<count).map { index in
            try RasterImage(width: width, height: height, channels: channels,
                            pixels: pattern(count: width * height * channels, seed: UInt32(index + 1)))
        }
    }

    private func u32(_ bytes: [UInt8], _ offset: Int = 0) -> UInt32 {
        bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    func testCRC32KnownValues() {
        XCTAssertEqual(APNG.crc32(Array("123456789".utf8)), 0xCBF4_3926)   // the CRC-32 check value
        XCTAssertEqual(APNG.crc32(Array("IEND".utf8)), 0xAE42_6082)        // every PNG's last 4 bytes
    }

    func testChunkLayoutSequenceNumbersAndCRCs() throws {
        let input = try frames(3)
        let data = try APNG.encode(frames: input, fps: 12, plays: 0)
        let bytes = Array(data)
        XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        // Walk the chunks by hand (not with APNG.parse): length, type, data, CRC over type + data.
        var offset = 8
        var types: [String] = []
        var payloads: [[UInt8]] = []
        while offset < bytes.count {
            let length = Int(u32(bytes, offset))
            let typeAndData = Array(bytes[(offset + 4)..<(offset + 8 + length)])
            XCTAssertEqual(u32(bytes, offset + 8 + length), APNG.crc32(typeAndData), "CRC of chunk \(types.count)")
            types.append(String(decoding: typeAndData.prefix(4), as: UTF8.self))
            payloads.append(Array(typeAndData.dropFirst(4)))
            offset += 12 + length
        }
        XCTAssertEqual(offset, bytes.count)
        let animation = types.filter { ["IHDR", "acTL", "fcTL", "IDAT", "fdAT", "IEND"].contains($0) }
        XCTAssertEqual(animation, ["IHDR", "acTL", "fcTL", "IDAT", "fcTL", "fdAT", "fcTL", "fdAT", "IEND"])
        XCTAssertLessThan(types.firstIndex(of: "acTL")!, types.firstIndex(of: "IDAT")!)
        let actl = payloads[types.firstIndex(of: "acTL")!]
        XCTAssertEqual(u32(actl), 3, "num_frames")
        XCTAssertEqual(u32(actl, 4), 0, "num_plays: loop forever")
        // fcTL and fdAT share one sequence 0, 1, 2, ... in file order.
        let numbered = zip(types, payloads).filter { $0.0 == "fcTL" || $0.0 == "fdAT" }
        XCTAssertEqual(numbered.map { u32($0.1) }, [0, 1, 2, 3, 4])
        for (type, payload) in numbered where type == "fcTL" {
            XCTAssertEqual(payload.count, 26)
            XCTAssertEqual(u32(payload, 4), 9, "width")
            XCTAssertEqual(u32(payload, 8), 6, "height")
            XCTAssertEqual(u32(payload, 12), 0, "x offset")
            XCTAssertEqual(u32(payload, 16), 0, "y offset")
            XCTAssertEqual(Array(payload[20..<24]), [0, 1, 0, 12], "delay 1/12 s")
            XCTAssertEqual(Array(payload[24..<26]), [0, 0], "dispose none, blend source")
        }
        // Each frame's image data is exactly what libpng wrote for that frame alone.
        let fdats = zip(types, payloads).filter { $0.0 == "fdAT" }.map { Array($0.1.dropFirst(4)) }
        for (index, payload) in fdats.enumerated() {
            let alone = try APNG.parse(Array(try PNG.encode(input[index + 1])))
            XCTAssertEqual(payload, alone.filter { $0.type == "IDAT" }.flatMap(\.data))
        }
    }

    func testRoundTripThroughTheReaderAndTheDefaultImage() throws {
        for channels in [1, 3, 4] {
            let input = try frames(4, channels: channels)
            let data = try APNG.encode(frames: input, fps: 8)
            let animation = try APNG.frames(of: data)
            XCTAssertEqual(animation.frames, input, "channels \(channels)")
            XCTAssertEqual(animation.delays, [0.125, 0.125, 0.125, 0.125])
            XCTAssertEqual(animation.plays, 0)
            // A decoder without APNG support (libpng here) sees frame 0.
            XCTAssertEqual(try PNG.decode(data), input[0])
        }
    }

    func testRetimedChangesOnlyTheDelays() throws {
        let input = try frames(2)
        let data = try APNG.encode(frames: input, fps: 8)
        let faster = try APNG.retimed(data, fps: 25)
        XCTAssertEqual(faster.count, data.count)
        let animation = try APNG.frames(of: faster)
        XCTAssertEqual(animation.frames, input)
        XCTAssertEqual(animation.delays, [0.04, 0.04])
        XCTAssertThrowsError(try APNG.retimed(try PNG.encode(input[0]), fps: 8))   // a still PNG
        XCTAssertThrowsError(try APNG.retimed(data, fps: 0))
    }

    func testBadInputIsRefused() throws {
        XCTAssertThrowsError(try APNG.encode(frames: [], fps: 8))
        let mixed = [try frames(1)[0], try frames(1, width: 4)[0]]
        XCTAssertThrowsError(try APNG.encode(frames: mixed, fps: 8)) { error in
            guard case .mismatchedImages = error as? ImageError else { return XCTFail("\(error)") }
        }
        var bytes = Array(try APNG.encode(frames: try frames(2), fps: 8))
        bytes[bytes.count - 20] ^= 0xFF   // inside the last fdAT: its CRC no longer matches
        XCTAssertThrowsError(try APNG.frames(of: Data(bytes))) { error in
            XCTAssertTrue("\(error)".contains("CRC mismatch"), "\(error)")
        }
        XCTAssertThrowsError(try APNG.frames(of: try PNG.encode(try frames(1)[0]))) { error in
            XCTAssertTrue("\(error)".contains("acTL"), "\(error)")
        }
    }

    func testStripSplitsIntoFramesAndContactSheet() throws {
        let input = try frames(3, width: 4, height: 2)
        // Lay them side by side as the engine does, then cut them apart.
        var strip: [UInt8] = []
        for y in 0..<2 { for frame in input { strip += frame.pixels[(y * 4 * 3)..<((y + 1) * 4 * 3)] } }
        let raster = try RasterImage(width: 12, height: 2, channels: 3, pixels: strip)
        XCTAssertEqual(try raster.frames(3), input)
        XCTAssertThrowsError(try raster.frames(5))
        let sheet = try ImageGrid.contactSheet(input)
        XCTAssertEqual(sheet.width, 3 * 4 + 2 * ImageGrid.contactSheetGap)
        XCTAssertEqual(sheet.height, 2)
    }

    /// Pillow (scripts/check-apng.py, in the test venv) decodes the frames back exactly.
    func testPillowDecodesTheFrames() throws {
        let python = try testPython()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rind-apng-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (channels, count, fps) in [(3, 8, 8), (4, 3, 25), (1, 2, 1)] {
            let input = try frames(count, width: 13, height: 7, channels: channels)
            let apng = directory.appendingPathComponent("clip-\(channels).png")
            let raw = directory.appendingPathComponent("clip-\(channels).raw")
            try APNG.encode(frames: input, fps: fps).write(to: apng)
            try Data(input.flatMap(\.pixels)).write(to: raw)
            let (status, output) = try runProcess(python, [TestProject.root.appendingPathComponent("scripts/check-apng.py").path,
                                                           apng.path, raw.path, "\(count)", "13", "7", "\(channels)", "\(fps)"])
            XCTAssertEqual(status, 0, output)
            XCTAssertTrue(output.contains("0 failure(s)"), output)
        }
    }
}
