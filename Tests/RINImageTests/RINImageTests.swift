import Foundation
import RINImage
import XCTest

final class PNGTests: XCTestCase {
    /// Deterministic bytes (a small LCG) so a failure reproduces.
    private func pattern(count: Int, seed: UInt32) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(truncatingIfNeeded: state >> 24)
        }
    }

    func testRoundTripGrayRGBAndRGBA() throws {
        for channels in [1, 3, 4] {
            let image = try RasterImage(width: 7, height: 5, channels: channels,
                                        pixels: pattern(count: 7 * 5 * channels, seed: UInt32(channels)))
            let data = try PNG.encode(image)
            XCTAssertEqual(Array(data.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A],
                           "PNG signature")
            let decoded = try PNG.decode(data)
            XCTAssertEqual(decoded, image, "channels \(channels)")
        }
    }

    /// `withUnsafeBytes` promises its pointer only inside the closure. libpng keeps the pointer it
    /// is given at `png_image_begin_read_from_memory` and reads through it again at
    /// `png_image_finish_read`, so both calls must run inside one closure. These bytes hand out a
    /// fresh copy on every call and wipe it when the closure returns, as a container is allowed to.
    func testDecodeReadsTheBytesInsideOneBorrow() throws {
        let image = try RasterImage(width: 9, height: 6, channels: 3, pixels: pattern(count: 9 * 6 * 3, seed: 7))
        let bytes = MovingBytes(Array(try PNG.encode(image)))
        XCTAssertEqual(try PNG.decode(bytes), image)
        XCTAssertEqual(bytes.borrows, 1, "decode borrows the bytes once")
    }

    func testDecodeOfGarbageFailsWithLibpngMessage() {
        let garbage = Data("this is not a PNG at all, just some text".utf8)
        XCTAssertThrowsError(try PNG.decode(garbage)) { error in
            guard case let .decodeFailed(message) = error as? ImageError else {
                return XCTFail("expected decodeFailed, got \(error)")
            }
            XCTAssertFalse(message.isEmpty)
            XCTAssertTrue("\(error)".hasPrefix("PNG decoding failed: "), "\(error)")
        }
        XCTAssertThrowsError(try PNG.decode(Data())) { error in
            XCTAssertEqual(error as? ImageError, .decodeFailed("no data"))
        }
    }

    func testDecodeOfTruncatedPNGFails() throws {
        let image = try RasterImage(width: 16, height: 16, channels: 3, pixels: pattern(count: 768, seed: 9))
        let data = try PNG.encode(image)
        XCTAssertThrowsError(try PNG.decode(data.prefix(data.count / 2))) { error in
            guard case .decodeFailed = error as? ImageError else {
                return XCTFail("expected decodeFailed, got \(error)")
            }
        }
    }

    func testDecodeRefusesTooManyPixels() throws {
        let image = try RasterImage(width: 10, height: 10, channels: 1, filledWith: 200)
        XCTAssertThrowsError(try PNG.decode(try PNG.encode(image), maxPixels: 99)) { error in
            XCTAssertEqual(error as? ImageError, .tooLarge(width: 10, height: 10, maxPixels: 99))
        }
        XCTAssertEqual(try PNG.decode(try PNG.encode(image), maxPixels: 100), image)
    }

    func testInvalidImagesAreRefused() {
        XCTAssertThrowsError(try RasterImage(width: 2, height: 2, channels: 3, pixels: [0, 1, 2])) { error in
            guard case .invalidImage = error as? ImageError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try RasterImage(width: 1, height: 1, channels: 2, pixels: [0, 1])) { error in
            guard case .invalidImage = error as? ImageError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try RasterImage(width: 0, height: 4, channels: 1, pixels: [])) { error in
            guard case .invalidImage = error as? ImageError else { return XCTFail("\(error)") }
        }
    }
}

final class ImageGridTests: XCTestCase {
    func testShape() {
        XCTAssertTrue(ImageGrid.shape(count: 0) == (0, 0))
        XCTAssertTrue(ImageGrid.shape(count: 1) == (1, 1))
        XCTAssertTrue(ImageGrid.shape(count: 3) == (2, 2))
        XCTAssertTrue(ImageGrid.shape(count: 4) == (2, 2))
        XCTAssertTrue(ImageGrid.shape(count: 5) == (2, 3))
        XCTAssertTrue(ImageGrid.shape(count: 10) == (3, 4))
        XCTAssertTrue(ImageGrid.shape(count: 5, columns: 5) == (1, 5))
        XCTAssertTrue(ImageGrid.shape(count: 3, columns: 8) == (1, 3))
        XCTAssertTrue(ImageGrid.shape(count: 3, columns: 1) == (3, 1))
    }

    func testComposeThreeImagesIntoTwoByTwoWithGap() throws {
        // Three 2x2 RGB images whose bytes are their index + 1; gap 1 of background 255.
        let images = try (0..<3).map { index in
            try RasterImage(width: 2, height: 2, channels: 3, filledWith: UInt8(index + 1))
        }
        let grid = try ImageGrid.compose(images, gap: 1, background: 255)
        XCTAssertEqual(grid.width, 5)
        XCTAssertEqual(grid.height, 5)
        XCTAssertEqual(grid.channels, 3)
        func pixel(_ x: Int, _ y: Int) -> UInt8 { grid.pixels[(y * grid.width + x) * 3] }
        let expected: [[UInt8]] = [
            [1, 1, 255, 2, 2],
            [1, 1, 255, 2, 2],
            [255, 255, 255, 255, 255],
            [3, 3, 255, 255, 255],
            [3, 3, 255, 255, 255],
        ]
        for y in 0..<5 {
            XCTAssertEqual((0..<5).map { pixel($0, y) }, expected[y], "row \(y)")
        }
    }

    func testComposeKeepsPixelOrderInsideCells() throws {
        let a = try RasterImage(width: 2, height: 1, channels: 1, pixels: [10, 20])
        let b = try RasterImage(width: 2, height: 1, channels: 1, pixels: [30, 40])
        let grid = try ImageGrid.compose([a, b], columns: 1, gap: 0)
        XCTAssertEqual(grid, try RasterImage(width: 2, height: 2, channels: 1, pixels: [10, 20, 30, 40]))
        XCTAssertEqual(try ImageGrid.compose([a]), a)
    }

    func testComposeRefusesMismatchedOrNoImages() throws {
        let a = try RasterImage(width: 2, height: 2, channels: 1, filledWith: 0)
        let b = try RasterImage(width: 2, height: 2, channels: 3, filledWith: 0)
        XCTAssertThrowsError(try ImageGrid.compose([a, b])) { error in
            guard case .mismatchedImages = error as? ImageError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try ImageGrid.compose([])) { error in
            guard case .invalidImage = error as? ImageError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try ImageGrid.compose([a, a], gap: -1)) { error in
            guard case .invalidImage = error as? ImageError else { return XCTFail("\(error)") }
        }
    }
}

/// Bytes that move: every `withUnsafeBytes` gets its own copy, zeroed when the closure returns
/// (kept allocated until deinit, so a reader that holds on reads zeros rather than freed memory).
private final class MovingBytes: ContiguousBytes {
    private let bytes: [UInt8]
    private var copies: [UnsafeMutableRawBufferPointer] = []
    private(set) var borrows = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    deinit { for copy in copies { copy.deallocate() } }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        borrows += 1
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        copies.append(copy)
        bytes.withUnsafeBytes { copy.copyMemory(from: $0) }
        defer { copy.initializeMemory(as: UInt8.self, repeating: 0) }
        return try body(UnsafeRawBufferPointer(copy))
    }
}
