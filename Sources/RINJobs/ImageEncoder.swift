// The job layer stores results as files but knows no image format (STYLE.md #1): whoever wires the
// service hands it an encoder (the daemon gives a PNG one built on RINImage).
import Foundation
import RINDiffusion

/// Turns sampled pixels into the bytes the service stores and hands back.
public protocol ImageEncoder: Sendable {
    /// The file name extension of what `encode` produces, e.g. `"png"`.
    var fileExtension: String { get }
    /// One final image.
    func encode(_ image: ImagePixels) throws -> Data
    /// A preview of all images of a run in one picture (e.g. a grid).
    func encodePreview(_ images: [ImagePixels]) throws -> Data
}
