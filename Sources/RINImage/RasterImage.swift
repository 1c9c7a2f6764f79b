// The pixel struct of the image layer: 8-bit channels, row-major, channels last. RINImage sits
// beside the engine (Package.swift's layers) and does not import it; the server converts
// ImagePixels to this.

/// An 8-bit image: `height` rows of `width` pixels of `channels` bytes (1 gray, 3 RGB, 4 RGBA).
public struct RasterImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let channels: Int
    /// `width * height * channels` bytes, row-major, channels last.
    public let pixels: [UInt8]

    /// Checks that the shape is positive, `channels` is 1, 3 or 4, and `pixels` has the size the
    /// shape needs.
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws(ImageError) {
        guard width > 0, height > 0 else {
            throw .invalidImage("width and height must be positive, got \(width)x\(height)")
        }
        guard [1, 3, 4].contains(channels) else {
            throw .invalidImage("channels must be 1 (gray), 3 (RGB) or 4 (RGBA), got \(channels)")
        }
        let (count, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, count.multipliedReportingOverflow(by: channels).overflow == false,
              pixels.count == count * channels else {
            throw .invalidImage("\(width)x\(height)x\(channels) needs \(width * height * channels) bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// A `width` x `height` image with every byte set to `value`.
    public init(width: Int, height: Int, channels: Int, filledWith value: UInt8) throws(ImageError) {
        guard width > 0, height > 0, width <= 1 << 20, height <= 1 << 20 else {
            throw .invalidImage("width and height must be in 1...\(1 << 20), got \(width)x\(height)")
        }
        try self.init(width: width, height: height, channels: channels,
                      pixels: [UInt8](repeating: value, count: width * height * max(1, channels)))
    }
}

/// Why an image operation failed.
public enum ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The shape or the byte count is wrong; the message says how.
    case invalidImage(String)
    /// The images given to the grid differ in size or channels.
    case mismatchedImages(String)
    /// libpng could not encode; its message.
    case encodeFailed(String)
    /// The bytes are not a PNG libpng can read; its message.
    case decodeFailed(String)
    /// The PNG declares more pixels than the decoder accepts.
    case tooLarge(width: Int, height: Int, maxPixels: Int)

    public var description: String {
        switch self {
        case let .invalidImage(message): "invalid image: \(message)"
        case let .mismatchedImages(message): "images do not match: \(message)"
        case let .encodeFailed(message): "PNG encoding failed: \(message)"
        case let .decodeFailed(message): "PNG decoding failed: \(message)"
        case let .tooLarge(width, height, maxPixels):
            "PNG of \(width)x\(height) pixels exceeds the limit of \(maxPixels) pixels"
        }
    }
}
