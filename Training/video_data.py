"""Moving-image clips from CIFAR-10 for the video RIN (`train.py --dataset cifar10-video`).

Each clip is one training image moving on a 32x32 canvas for F frames: a pan (random direction and
speed), a zoom (in or out) and a small rotation, each changing at a constant rate per frame, with
an optional horizontal flip of the source. The canvas outside the image is the image reflected
about its borders (`grid_sample`'s reflection padding), so frames have no black corners. The clip's
class is the image's class.

Motion of frame f (f = 0 .. F-1), in pixels relative to the canvas centre:

    scale  s_f = scale0 * exp(zoom * (f - c))          c = (F - 1) / 2, the middle frame
    angle  a_f = angle0 + spin * (f - c)               radians
    shift  t_f = shift0 + velocity * (f - c)           (x, y) pixels, y down

A source point p (x, y pixels from the image centre, y down) appears at  s_f R(a_f) p + t_f  in frame f,
with R(a) = [[cos a, -sin a], [sin a, cos a]]. The
motion is centred on the middle frame so the object stays near the canvas centre for the whole clip.

Everything is vectorised in torch: `sample_motion` draws the parameters of a batch from a
`torch.Generator` (so a clip set is a pure function of the seed) and `render` warps the images with
one `affine_grid` + `grid_sample` over all B x F frames (milliseconds for a training batch).

    python Training/video_data.py --count 8 --seed 0 -o /tmp/clips.png    # a strip per clip, for a look
"""

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Parameter ranges (per clip). Speeds are per frame; with 8 frames the largest pan is ~10 px over
# the clip, the largest zoom x1.28 and the largest rotation ~17 degrees.
MAX_SPEED = 1.5           # pixels per frame
SCALE0_RANGE = (0.9, 1.25)
MAX_ZOOM = 0.035          # log-scale change per frame
MAX_ANGLE0 = 0.12         # radians
MAX_SPIN = 0.04           # radians per frame
MAX_SHIFT0 = 2.0          # pixels


def sample_motion(count, generator, device="cpu"):
    """Random motion parameters for `count` clips: a dict of float32 tensors on `device`:
    scale0, zoom, angle0, spin (count,), shift0, velocity (count, 2) in pixels (x, y), flip (count,) bool."""
    def uniform(low, high, *shape):
        return torch.rand(*shape, generator=generator, device=device) * (high - low) + low

    direction = uniform(0.0, 2 * math.pi, count)
    speed = uniform(0.0, MAX_SPEED, count)
    return {
        "scale0": uniform(*SCALE0_RANGE, count),
        "zoom": uniform(-MAX_ZOOM, MAX_ZOOM, count),
        "angle0": uniform(-MAX_ANGLE0, MAX_ANGLE0, count),
        "spin": uniform(-MAX_SPIN, MAX_SPIN, count),
        "shift0": uniform(-MAX_SHIFT0, MAX_SHIFT0, count, 2),
        "velocity": torch.stack([speed * torch.cos(direction), speed * torch.sin(direction)], dim=1),
        "flip": torch.rand(count, generator=generator, device=device) < 0.5,
    }


def describe_motion():
    """The parameter ranges, for the exported config's training record."""
    return {"max_speed_px_per_frame": MAX_SPEED, "scale0": list(SCALE0_RANGE), "max_log_zoom_per_frame": MAX_ZOOM,
            "max_angle0_rad": MAX_ANGLE0, "max_spin_rad_per_frame": MAX_SPIN, "max_shift0_px": MAX_SHIFT0,
            "flip_probability": 0.5, "background": "reflection"}


def frame_motion(motion, frames):
    """Per-frame (scale (B, F), angle (B, F), shift (B, F, 2)) of `motion` (see the module doc)."""
    offset = torch.arange(frames, dtype=torch.float32, device=motion["zoom"].device) - (frames - 1) / 2
    scale = motion["scale0"][:, None] * torch.exp(motion["zoom"][:, None] * offset)
    angle = motion["angle0"][:, None] + motion["spin"][:, None] * offset
    shift = motion["shift0"][:, None, :] + motion["velocity"][:, None, :] * offset[None, :, None]
    return scale, angle, shift


def render(images, motion, frames, size=None):
    """Warps uint8 images (B, H, W, C) into float32 clips (B, frames, size, size, C) in [-1, 1].

    The output pixel q (pixels from the canvas centre) of frame f shows the source at
    R(-a_f) (q - t_f) / s_f (bilinear, reflection outside the image); flipped clips mirror the
    source first."""
    B, H, W, C = images.shape
    size = size or H
    source = images.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # (B, C, H, W)
    source = torch.where(motion["flip"][:, None, None, None], source.flip(3), source)
    scale, angle, shift = frame_motion(motion, frames)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps normalised output coordinates ([-1, 1] over `size` pixels, align_corners
    # False) to normalised input coordinates ([-1, 1] over W or H pixels). In pixels:
    # p = M (q - t) with M = R(-a) / s = [[cos, sin], [-sin, cos]] / s.
    m00, m01, m10, m11 = cos / scale, sin / scale, -sin / scale, cos / scale
    sx_in, sy_in = 2.0 / W, 2.0 / H  # input pixels -> normalised
    to_px = size / 2.0               # normalised output -> output pixels
    tx, ty = shift[..., 0], shift[..., 1]
    theta = torch.stack([
        torch.stack([m00 * to_px * sx_in, m01 * to_px * sx_in, -(m00 * tx + m01 * ty) * sx_in], dim=-1),
        torch.stack([m10 * to_px * sy_in, m11 * to_px * sy_in, -(m10 * tx + m11 * ty) * sy_in], dim=-1),
    ], dim=-2)  # (B, F, 2, 3)
    theta = theta.reshape(B * frames, 2, 3)
    grid = F.affine_grid(theta, (B * frames, C, size, size), align_corners=False)
    repeated = source[:, None].expand(B, frames, C, H, W).reshape(B * frames, C, H, W)
    out = F.grid_sample(repeated, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.reshape(B, frames, C, size, size).permute(0, 1, 3, 4, 2).contiguous()


def clips(images, labels, count, seed, frames=8, device="cpu"):
    """`count` clips drawn with seed `seed`: (float32 (count, frames, H, W, C) in [-1, 1], int64 labels,
    the source indices, the motion). The same seed gives the same clips."""
    generator = torch.Generator(device=device).manual_seed(seed)
    index = torch.randint(0, images.shape[0], (count,), generator=generator, device=device)
    motion = sample_motion(count, generator, device)
    return render(images[index], motion, frames), labels[index], index, motion


def to_uint8(clip):
    """[-1, 1] float -> uint8 pixels as the engine rounds them (half away from zero)."""
    scaled = (clip + 1) * 127.5
    return torch.clamp(torch.sign(scaled) * torch.floor(scaled.abs() + 0.5), 0, 255).to(torch.uint8)


def main():
    import numpy as np
    from PIL import Image

    import data

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", required=True, help="PNG: one row per clip, frames side by side")
    args = parser.parse_args()
    images, labels = data.load_split("train")
    batch, classes, _, _ = clips(torch.from_numpy(images), torch.from_numpy(labels), args.count, args.seed,
                                 args.frames)
    pixels = to_uint8(batch).numpy()  # (n, F, H, W, C)
    rows = [np.concatenate(list(clip), axis=1) for clip in pixels]
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.output)
    print(f"wrote {args.output}: classes {[data.CLASS_NAMES[c] for c in classes.tolist()]}")


if __name__ == "__main__":
    main()
