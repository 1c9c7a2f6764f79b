// The job layer stores whatever its ImageEncoder produces; the daemon gives it PNGs (RINImage):
// an image model's results as PNG, a video model's as animated PNG (APNG), and previews as stills.
import Foundation
import RINDiffusion
import RINImage
import RINJobs
import RINModel

/// Encodes final images as PNG, final clips as APNG, and previews as one PNG grid of all images of
/// a run (for clips: one contact sheet per clip, one below the other).
public struct PNGImageEncoder: ImageEncoder {
    public init() {}

    public var fileExtension: String { "png" }

    /// A clip is stored at `RINConfig.Sampling.defaultFPS`; the server rewrites the frame delays to
    /// the model's or the request's rate when it serves it (`ClipRoutes`), so no rate is stored.
    public func encode(_ image: ImagePixels) throws -> Data {
        let raster = try RasterImage(width: image.width, height: image.height, channels: image.channels,
                                     pixels: image.pixels)
        guard image.frames > 1 else { return try PNG.encode(raster) }
        return try APNG.encode(frames: try raster.frames(image.frames), fps: RINConfig.Sampling.defaultFPS)
    }

    public func encodePreview(_ images: [ImagePixels]) throws -> Data {
        let rasters = try images.map { image throws(ImageError) in
            let raster = try RasterImage(width: image.width, height: image.height, channels: image.channels,
                                         pixels: image.pixels)
            if image.frames > 1 { return try ImageGrid.contactSheet(try raster.frames(image.frames)) }
            return raster
        }
        let clips = images.contains { $0.frames > 1 }
        return try PNG.encode(try ImageGrid.compose(rasters, columns: clips ? 1 : nil))
    }
}
