// The job layer stores whatever its ImageEncoder produces; the daemon gives it PNGs (RINImage).
import Foundation
import RINDiffusion
import RINImage
import RINJobs

/// Encodes final images as PNG and previews as one PNG grid of all images of a run.
public struct PNGImageEncoder: ImageEncoder {
    public init() {}

    public var fileExtension: String { "png" }

    public func encode(_ image: ImagePixels) throws -> Data {
        try PNG.encode(try RasterImage(width: image.width, height: image.height, channels: image.channels,
                                       pixels: image.pixels))
    }

    public func encodePreview(_ images: [ImagePixels]) throws -> Data {
        let rasters = try images.map { image throws(ImageError) in
            try RasterImage(width: image.width, height: image.height, channels: image.channels, pixels: image.pixels)
        }
        return try PNG.encode(try ImageGrid.compose(rasters))
    }
}
