// PNG through libpng's simplified API (png_image_*), which reports errors in the png_image struct
// instead of longjmp-ing, so Swift calls it directly (see Sources/CLibPNG/shim.h).
import CLibPNG
import Foundation

/// PNG encoding and decoding of `RasterImage`s (8-bit gray, RGB, RGBA).
public enum PNG {
    /// Encodes `image` as an 8-bit PNG of its channel count.
    public static func encode(_ image: RasterImage) throws(ImageError) -> Data {
        let handle = PNGImageHandle()
        handle.image.width = UInt32(image.width)
        handle.image.height = UInt32(image.height)
        handle.image.format = format(channels: image.channels)
        let stride = Int32(image.width * image.channels)
        // First call sizes the buffer, second call fills it (libpng's documented two-pass use).
        var size: png_alloc_size_t = 0
        let sized = image.pixels.withUnsafeBytes { pixels in
            png_image_write_to_memory(&handle.image, nil, &size, 0, pixels.baseAddress, stride, nil)
        }
        guard sized != 0, size > 0 else { throw .encodeFailed(handle.message) }
        var data = Data(count: Int(size))
        let written = data.withUnsafeMutableBytes { output in
            image.pixels.withUnsafeBytes { pixels in
                png_image_write_to_memory(&handle.image, output.baseAddress, &size, 0,
                                          pixels.baseAddress, stride, nil)
            }
        }
        guard written != 0 else { throw .encodeFailed(handle.message) }
        data.count = Int(size)
        return data
    }

    /// Decodes a PNG. Gray stays gray, gray+alpha becomes RGBA, color without alpha becomes RGB
    /// and color with alpha (or a transparent palette) RGBA; 16-bit samples become 8-bit.
    /// More than `maxPixels` pixels is refused before any pixel memory is allocated.
    public static func decode(_ data: some ContiguousBytes, maxPixels: Int = 1 << 26) throws(ImageError) -> RasterImage {
        // libpng keeps the pointer given to png_image_begin_read_from_memory and reads through it
        // again in png_image_finish_read, so the whole decode runs inside one borrow of the bytes
        // (a pointer from `withUnsafeBytes` is valid only inside its closure).
        let result = data.withUnsafeBytes { bytes in
            Result { () throws(ImageError) in try decode(borrowed: bytes, maxPixels: maxPixels) }
        }
        return try result.get()
    }

    private static func decode(borrowed bytes: UnsafeRawBufferPointer, maxPixels: Int) throws(ImageError) -> RasterImage {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { throw .decodeFailed("no data") }
        let handle = PNGImageHandle()
        guard png_image_begin_read_from_memory(&handle.image, base, bytes.count) != 0 else {
            throw .decodeFailed(handle.message)
        }
        let width = Int(handle.image.width)
        let height = Int(handle.image.height)
        guard width > 0, height > 0, width.multipliedReportingOverflow(by: height).partialValue <= maxPixels,
              !width.multipliedReportingOverflow(by: height).overflow else {
            throw .tooLarge(width: width, height: height, maxPixels: maxPixels)
        }
        let sourceFormat = handle.image.format
        let hasColor = sourceFormat & UInt32(PNG_FORMAT_FLAG_COLOR) != 0
        let hasAlpha = sourceFormat & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0
        let channels = hasAlpha ? 4 : (hasColor ? 3 : 1)
        handle.image.format = format(channels: channels)
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        let finished = pixels.withUnsafeMutableBytes { output in
            png_image_finish_read(&handle.image, nil, output.baseAddress, Int32(width * channels), nil)
        }
        guard finished != 0 else { throw .decodeFailed(handle.message) }
        return try RasterImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    private static func format(channels: Int) -> UInt32 {
        switch channels {
        case 1: UInt32(PNG_FORMAT_GRAY)
        case 3: UInt32(PNG_FORMAT_FLAG_COLOR)
        default: UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)
        }
    }
}

/// Owns one `png_image` (one Swift type per C handle) and frees libpng's internal state in `deinit`:
/// `png_image_free` is a no-op once libpng has freed it itself, so calling it always is safe.
private final class PNGImageHandle {
    var image = png_image()

    init() {
        image.version = UInt32(PNG_IMAGE_VERSION)
    }

    deinit {
        png_image_free(&image)
    }

    /// libpng's message for the last failure (a NUL-terminated char[64] in the struct).
    var message: String {
        let text = withUnsafeBytes(of: image.message) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return text.isEmpty ? "libpng gave no message" : text
    }
}
