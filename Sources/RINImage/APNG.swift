// Animated PNG (APNG 1.0, the W3C PNG specification, third edition, "fcTL", "fdAT", "acTL") around
// frames encoded by libpng. Debian's libpng has no APNG support, so the animation chunks are written
// here: every frame is encoded as an ordinary PNG by `PNG.encode`, and its IDAT payload becomes the
// default image (frame 0, IDAT) or an fdAT chunk (later frames), each after its fcTL.
import Foundation

/// Animated PNGs: encoding frames, changing their frame rate, and reading the frames back.
public enum APNG {
    /// The 8-byte PNG signature.
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// One chunk: its 4-letter type and its data (length and CRC are computed when written).
    public struct Chunk: Equatable, Sendable {
        public var type: String
        public var data: [UInt8]
        public init(type: String, data: [UInt8]) { self.type = type; self.data = data }
    }

    /// Encodes `frames` (same width, height and channels) as an APNG in which every frame covers
    /// the whole canvas and is shown for `1 / fps` seconds; `plays` 0 loops forever.
    /// Frame 0 is also the default image, so a viewer without APNG support shows it as a still.
    public static func encode(frames: [RasterImage], fps: Int, plays: Int = 0) throws(ImageError) -> Data {
        guard let first = frames.first else { throw .invalidImage("an animation needs at least one frame") }
        guard (1...Int(UInt16.max)).contains(fps) else { throw .invalidImage("fps must be in 1...65535, got \(fps)") }
        guard (0...Int(UInt32.max)).contains(plays) else { throw .invalidImage("plays must be >= 0, got \(plays)") }
        for (index, frame) in frames.enumerated()
        where (frame.width, frame.height, frame.channels) != (first.width, first.height, first.channels) {
            throw .mismatchedImages("frame \(index) is \(frame.width)x\(frame.height)x\(frame.channels), "
                                    + "frame 0 is \(first.width)x\(first.height)x\(first.channels)")
        }
        var header: Chunk?
        var beforeData: [Chunk] = []   // frame 0's ancillary chunks between IHDR and IDAT (e.g. sRGB)
        var output = signature
        var sequence: UInt32 = 0
        for (index, frame) in frames.enumerated() {
            let chunks = try parse(Array(try PNG.encode(frame)))
            guard let ihdr = chunks.first, ihdr.type == "IHDR" else { throw .encodeFailed("libpng wrote no IHDR first") }
            let payload = chunks.filter { $0.type == "IDAT" }.flatMap(\.data)
            guard !payload.isEmpty else { throw .encodeFailed("libpng wrote no IDAT") }
            if index == 0 {
                header = ihdr
                beforeData = Array(chunks.dropFirst().prefix { $0.type != "IDAT" && $0.type != "IEND" })
                write(ihdr, to: &output)
                write(Chunk(type: "acTL", data: be32(UInt32(frames.count)) + be32(UInt32(plays))), to: &output)
                for chunk in beforeData { write(chunk, to: &output) }
            } else if ihdr != header {
                throw .encodeFailed("libpng wrote frame \(index) with a different IHDR")
            }
            write(frameControl(sequence: sequence, width: frame.width, height: frame.height, fps: fps), to: &output)
            sequence += 1
            if index == 0 {
                // The default image is frame 0: IDAT chunks of at most 1 MiB each, as libpng splits them.
                for chunk in chunks where chunk.type == "IDAT" { write(chunk, to: &output) }
            } else {
                for start in stride(from: 0, to: payload.count, by: 1 << 20) {
                    let piece = payload[start..<min(start + (1 << 20), payload.count)]
                    write(Chunk(type: "fdAT", data: be32(sequence) + piece), to: &output)
                    sequence += 1
                }
            }
        }
        write(Chunk(type: "IEND", data: []), to: &output)
        return Data(output)
    }

    /// The same animation with every frame shown for `1 / fps` seconds: each fcTL's delay is
    /// rewritten (and its CRC recomputed); nothing else changes.
    public static func retimed(_ data: Data, fps: Int) throws(ImageError) -> Data {
        guard (1...Int(UInt16.max)).contains(fps) else { throw .invalidImage("fps must be in 1...65535, got \(fps)") }
        var chunks = try parse(Array(data))
        guard chunks.contains(where: { $0.type == "acTL" }) else { throw .decodeFailed("not an animated PNG (no acTL chunk)") }
        for index in chunks.indices where chunks[index].type == "fcTL" {
            guard chunks[index].data.count == 26 else { throw .decodeFailed("fcTL chunk of \(chunks[index].data.count) bytes, not 26") }
            chunks[index].data.replaceSubrange(20..<24, with: be16(1) + be16(UInt16(fps)))
        }
        var output = signature
        for chunk in chunks { write(chunk, to: &output) }
        return Data(output)
    }

    /// What `frames(of:)` reads besides the pixels.
    public struct Animation: Equatable, Sendable {
        public var frames: [RasterImage]
        /// Each frame's delay in seconds (delay_num / delay_den; a zero denominator means 1/100 s).
        public var delays: [Double]
        /// acTL's num_plays: 0 loops forever.
        public var plays: Int
    }

    /// Reads an APNG back into its frames, each decoded by libpng. Checks the signature, every CRC,
    /// the acTL frame count and the fcTL/fdAT sequence numbers. Only animations whose frames cover
    /// the whole canvas (what `encode` writes) are read; others are refused, naming the frame.
    public static func frames(of data: Data, maxPixels: Int = 1 << 26) throws(ImageError) -> Animation {
        let chunks = try parse(Array(data))
        guard let ihdr = chunks.first, ihdr.type == "IHDR", ihdr.data.count == 13 else {
            throw .decodeFailed("the first chunk is not a 13-byte IHDR")
        }
        guard let actl = chunks.first(where: { $0.type == "acTL" }), actl.data.count == 8 else {
            throw .decodeFailed("not an animated PNG (no 8-byte acTL chunk)")
        }
        let declared = Int(u32(actl.data, 0))
        let canvas = (width: u32(ihdr.data, 0), height: u32(ihdr.data, 4))
        let ancillary = chunks.dropFirst().prefix { $0.type != "IDAT" && $0.type != "fcTL" && $0.type != "IEND" }
            .filter { $0.type != "acTL" }
        var frames: [RasterImage] = []
        var delays: [Double] = []
        var expectedSequence: UInt32 = 0
        var current: (control: [UInt8], payload: [UInt8])?
        var seenIDAT = false
        func finish(_ frame: (control: [UInt8], payload: [UInt8])) throws(ImageError) {
            let index = frames.count
            let width = u32(frame.control, 4), height = u32(frame.control, 8)
            guard width == canvas.width, height == canvas.height, u32(frame.control, 12) == 0, u32(frame.control, 16) == 0 else {
                throw .decodeFailed("frame \(index) does not cover the canvas; only full-canvas frames are read")
            }
            guard !frame.payload.isEmpty else { throw .decodeFailed("frame \(index) has no image data") }
            var png = signature
            write(ihdr, to: &png)
            for chunk in ancillary { write(chunk, to: &png) }
            write(Chunk(type: "IDAT", data: frame.payload), to: &png)
            write(Chunk(type: "IEND", data: []), to: &png)
            frames.append(try PNG.decode(Data(png), maxPixels: maxPixels))
            let numerator = Double(u16(frame.control, 20)), denominator = Double(u16(frame.control, 22))
            delays.append(numerator / (denominator == 0 ? 100 : denominator))
        }
        for chunk in chunks {
            switch chunk.type {
            case "fcTL", "fdAT":
                guard chunk.data.count >= 4, u32(chunk.data, 0) == expectedSequence else {
                    throw .decodeFailed("\(chunk.type) chunk out of sequence (expected number \(expectedSequence))")
                }
                expectedSequence += 1
                if chunk.type == "fcTL" {
                    guard chunk.data.count == 26 else { throw .decodeFailed("fcTL chunk of \(chunk.data.count) bytes, not 26") }
                    if let frame = current { try finish(frame) }
                    current = (chunk.data, [])
                } else {
                    guard current != nil else { throw .decodeFailed("fdAT chunk before any fcTL") }
                    current!.payload += chunk.data.dropFirst(4)
                }
            case "IDAT":
                seenIDAT = true
                // IDAT belongs to frame 0 only when an fcTL came first; otherwise it is a default
                // image outside the animation.
                if current != nil && frames.isEmpty { current!.payload += chunk.data }
            default:
                continue
            }
        }
        if let frame = current { try finish(frame) }
        guard seenIDAT else { throw .decodeFailed("no IDAT chunk") }
        guard frames.count == declared else {
            throw .decodeFailed("acTL declares \(declared) frames but \(frames.count) were found")
        }
        return Animation(frames: frames, delays: delays, plays: Int(u32(actl.data, 4)))
    }

    // MARK: Chunks

    /// Splits a PNG datastream into chunks, checking the signature, lengths and CRCs, and that it
    /// ends with IEND.
    public static func parse(_ bytes: [UInt8]) throws(ImageError) -> [Chunk] {
        guard bytes.count >= 8, Array(bytes[0..<8]) == signature else { throw .decodeFailed("not a PNG (bad signature)") }
        var chunks: [Chunk] = []
        var offset = 8
        while offset < bytes.count {
            guard offset + 12 <= bytes.count else { throw .decodeFailed("truncated chunk at byte \(offset)") }
            let length = Int(u32(bytes, offset))
            guard length <= 0x7FFF_FFFF, offset + 12 + length <= bytes.count else {
                throw .decodeFailed("chunk at byte \(offset) runs past the end")
            }
            let typeBytes = Array(bytes[(offset + 4)..<(offset + 8)])
            guard typeBytes.allSatisfy({ (65...90).contains($0) || (97...122).contains($0) }) else {
                throw .decodeFailed("invalid chunk type at byte \(offset)")
            }
            let type = String(decoding: typeBytes, as: UTF8.self)
            let data = Array(bytes[(offset + 8)..<(offset + 8 + length)])
            let stored = u32(bytes, offset + 8 + length)
            guard stored == crc32(typeBytes + data) else { throw .decodeFailed("CRC mismatch in \(type) chunk at byte \(offset)") }
            chunks.append(Chunk(type: type, data: data))
            offset += 12 + length
            if type == "IEND" { break }
        }
        guard chunks.last?.type == "IEND" else { throw .decodeFailed("no IEND chunk") }
        return chunks
    }

    /// An fcTL for a full-canvas frame shown for 1/fps s, replacing the canvas (dispose none,
    /// blend source).
    static func frameControl(sequence: UInt32, width: Int, height: Int, fps: Int) -> Chunk {
        Chunk(type: "fcTL", data: be32(sequence) + be32(UInt32(width)) + be32(UInt32(height)) + be32(0) + be32(0)
              + be16(1) + be16(UInt16(fps)) + [0, 0])
    }

    static func write(_ chunk: Chunk, to output: inout [UInt8]) {
        let type = Array(chunk.type.utf8)
        output += be32(UInt32(chunk.data.count))
        output += type
        output += chunk.data
        output += be32(crc32(type + chunk.data))
    }

    /// CRC-32 (ISO 3309, the PNG chunk CRC) of `bytes`.
    public static func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    private static let crcTable: [UInt32] = (0..<256).map { index in
        var c = UInt32(index)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func be32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    static func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xFF)] }

    static func u32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    static func u16(_ bytes: [UInt8], _ offset: Int) -> UInt16 { UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1]) }
}

extension RasterImage {
    /// Cuts a strip of `frames` equal frames laid side by side (width = frames x frame width,
    /// the layout in which the engine hands over a clip) into the frames.
    public func frames(_ count: Int) throws(ImageError) -> [RasterImage] {
        guard count >= 1, width % count == 0 else {
            throw .invalidImage("a strip \(width) pixels wide cannot hold \(count) equal frames")
        }
        let frameWidth = width / count
        let rowBytes = frameWidth * channels
        return try (0..<count).map { frame throws(ImageError) in
            var bytes: [UInt8] = []
            bytes.reserveCapacity(rowBytes * height)
            for y in 0..<height {
                let start = (y * width + frame * frameWidth) * channels
                bytes += pixels[start..<start + rowBytes]
            }
            return try RasterImage(width: frameWidth, height: height, channels: channels, pixels: bytes)
        }
    }
}
