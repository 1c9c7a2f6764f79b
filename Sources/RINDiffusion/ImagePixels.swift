import RINModel

/// An 8-bit image: `clamp(round((x0 + 1) * 127.5), 0, 255)` of an x0 estimate, rounding half away
/// from zero (checkpoints/README.md, "Sampling" step 4). A video clip's frames are laid side by
/// side: width = frames * W, and `frames` says how many.
public struct ImagePixels: Sendable, Equatable {
    public let width: Int, height: Int, channels: Int
    /// Frames laid side by side in `pixels` (1 for an image); each is `width / frames` wide.
    public var frames: Int = 1
    /// Row-major, channels last: `height * width * channels` bytes.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels, "ImagePixels: \(pixels.count) bytes for \(width)x\(height)x\(channels)")
        self.width = width; self.height = height; self.channels = channels; self.pixels = pixels
    }

    /// The 8-bit value of one x0 sample.
    @inline(__always)
    public static func byte(_ value: Float) -> UInt8 {
        UInt8(min(max(((value + 1) * 127.5).rounded(.toNearestOrAwayFromZero), 0), 255))
    }

    /// Converts one image (or clip) x0 (F, H, W, C) of `config`'s geometry.
    public init(x0: UnsafePointer<Float>, image: RINConfig.Image) {
        let F = image.frames, H = image.height, W = image.width, C = image.channels
        var bytes = [UInt8](repeating: 0, count: F * H * W * C)
        for f in 0..<F {
            for y in 0..<H {
                for x in 0..<W {
                    for c in 0..<C {
                        bytes[(y * (F * W) + f * W + x) * C + c] = Self.byte(x0[((f * H + y) * W + x) * C + c])
                    }
                }
            }
        }
        self.init(width: F * W, height: H, channels: C, pixels: bytes)
        frames = F
    }
}
