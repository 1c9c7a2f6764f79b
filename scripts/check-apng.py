#!/usr/bin/env python3
"""Decodes an animated PNG with Pillow (an APNG decoder independent of rind's) and compares every
frame with the raw pixels it should hold (run by Tests/RINImageTests and Tests/RINServerTests).

usage: check-apng.py APNG RAW FRAMES WIDTH HEIGHT CHANNELS [FPS]

RAW: the expected frames' bytes, frame after frame, each HEIGHT rows of WIDTH pixels of CHANNELS
bytes (1 gray, 3 RGB, 4 RGBA). Checks that Pillow sees an animated PNG of FRAMES frames of
WIDTH x HEIGHT, that each frame's pixels equal RAW's exactly, and (with FPS) that every frame lasts
1000 / FPS ms. Prints one line per failure and a summary; exits 1 if there was any.
"""
import sys

from PIL import Image

MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def main() -> int:
    path, raw_path = sys.argv[1], sys.argv[2]
    frames, width, height, channels = (int(v) for v in sys.argv[3:7])
    fps = float(sys.argv[7]) if len(sys.argv) > 7 else None
    raw = open(raw_path, "rb").read()
    size = width * height * channels
    failures = []
    if len(raw) != frames * size:
        failures.append(f"RAW holds {len(raw)} bytes, not {frames} x {size}")
    with Image.open(path) as image:
        if image.format != "PNG" or not getattr(image, "is_animated", False):
            failures.append(f"Pillow reads {image.format}, animated {getattr(image, 'is_animated', False)}")
        if image.n_frames != frames:
            failures.append(f"Pillow finds {image.n_frames} frames, expected {frames}")
        if image.size != (width, height):
            failures.append(f"canvas {image.size}, expected {(width, height)}")
        for index in range(min(frames, image.n_frames)):
            image.seek(index)
            pixels = image.convert(MODES[channels]).tobytes()
            if pixels != raw[index * size:(index + 1) * size]:
                differing = sum(a != b for a, b in zip(pixels, raw[index * size:(index + 1) * size]))
                failures.append(f"frame {index}: {differing} of {size} bytes differ")
            duration = image.info.get("duration")
            if fps is not None and (duration is None or abs(duration - 1000.0 / fps) > 1e-6):
                failures.append(f"frame {index} lasts {duration} ms, expected {1000.0 / fps}")
    for failure in failures:
        print(failure)
    print(f"checked {frames} frames of {width}x{height}x{channels}: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
