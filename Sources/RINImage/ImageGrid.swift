// Several images in one picture: previews of a run with n images, and contact sheets in the CLI.

/// Lays images out row-major in a grid with a gap between cells.
public enum ImageGrid {
    /// The grid for `count` images: `columns` as given (at most `count`), else the smallest
    /// `columns` with `columns * columns >= count`; rows as needed.
    public static func shape(count: Int, columns: Int? = nil) -> (rows: Int, columns: Int) {
        guard count > 0 else { return (0, 0) }
        var cols = columns.map { min(max(1, $0), count) } ?? 1
        if columns == nil {
            while cols * cols < count { cols += 1 }
        }
        return ((count + cols - 1) / cols, cols)
    }

    /// Composes `images` (same width, height and channels) into one image, row-major, with `gap`
    /// pixels of `background` between cells; cells left over in the last row are background.
    public static func compose(_ images: [RasterImage], columns: Int? = nil, gap: Int = 2,
                               background: UInt8 = 0) throws(ImageError) -> RasterImage {
        guard let first = images.first else { throw .invalidImage("no images to compose") }
        guard gap >= 0 else { throw .invalidImage("gap must be >= 0, got \(gap)") }
        for (index, image) in images.enumerated()
        where (image.width, image.height, image.channels) != (first.width, first.height, first.channels) {
            throw .mismatchedImages("image \(index) is \(image.width)x\(image.height)x\(image.channels), "
                                    + "image 0 is \(first.width)x\(first.height)x\(first.channels)")
        }
        if images.count == 1 { return first }
        let (rows, cols) = shape(count: images.count, columns: columns)
        let width = cols * first.width + (cols - 1) * gap
        let height = rows * first.height + (rows - 1) * gap
        let channels = first.channels
        var pixels = [UInt8](repeating: background, count: width * height * channels)
        let rowBytes = first.width * channels
        for (index, image) in images.enumerated() {
            let top = (index / cols) * (first.height + gap)
            let left = (index % cols) * (first.width + gap)
            for y in 0..<first.height {
                let destination = ((top + y) * width + left) * channels
                let source = y * rowBytes
                pixels.replaceSubrange(destination..<destination + rowBytes,
                                       with: image.pixels[source..<source + rowBytes])
            }
        }
        return try RasterImage(width: width, height: height, channels: channels, pixels: pixels)
    }
}

extension ImageGrid {
    /// The gap in pixels between the frames of a contact sheet.
    public static let contactSheetGap = 2

    /// A clip's frames in one row, left to right, `contactSheetGap` black pixels apart: the still
    /// picture of a clip (`/jobs/{id}/frames.png`, and every frame's estimate in previews).
    public static func contactSheet(_ frames: [RasterImage]) throws(ImageError) -> RasterImage {
        try compose(frames, columns: frames.count, gap: contactSheetGap)
    }
}
