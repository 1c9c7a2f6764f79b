// `rind sample --apng`: a video model's clips as animated PNGs.
import Foundation
import RINDiffusion
import RINImage
import RINModel

extension Sample {
    /// `--apng` needs a video model and no `--grid`; checked before sampling.
    func checkClipOutput(_ config: RINConfig) throws {
        guard config.isVideo else {
            throw CommandLineError(message: "--apng needs a video model (image.frames > 1); this model makes images")
        }
        guard !grid else { throw CommandLineError(message: "--apng writes one file per clip; leave out --grid") }
    }

    /// Writes each clip as an APNG at the model's frame rate (`sampling.fps`): `output` for one
    /// clip, `out-0.png`, `out-1.png`, ... for several.
    func writeClips(_ clips: [ImagePixels], config: RINConfig) throws {
        try checkClipOutput(config)
        let outputURL = URL(fileURLWithPath: output)
        for (index, clip) in clips.enumerated() {
            let strip = try RasterImage(width: clip.width, height: clip.height, channels: clip.channels, pixels: clip.pixels)
            let data = try APNG.encode(frames: try strip.frames(clip.frames), fps: config.framesPerSecond)
            let path = clips.count == 1 ? output
                : "\(outputURL.deletingPathExtension().path)-\(index).\(outputURL.pathExtension.isEmpty ? "png" : outputURL.pathExtension)"
            try data.write(to: URL(fileURLWithPath: path))
            FileHandle.standardError.write(Data("wrote \(path) (\(clip.frames) frames at \(config.framesPerSecond) fps)\n".utf8))
        }
    }
}
