#!/usr/bin/env python3
"""Samples images from a checkpoint with the PyTorch reference; the flags are those of `rind sample`.

    python Training/sample.py --checkpoint checkpoints/cifar10 --class cat --seed 7 -o cat.png
    python Training/sample.py --checkpoint DIR --count 4 --grid -o grid.png

Defaults for --steps, --sampler, --schedule and --guidance come from config.json's `sampling`.
--class takes an id or a name/synonym (rin/classes.py: ImageNet ids such as 207 for models with a label
space, case-insensitive names, `_` as a space); leave it out for an unconditional model (or for the
null class of a model that has one). Output: a PNG with pixels clamp(round((x0 + 1) * 127.5), 0, 255);
a video clip is written as its frames side by side. With --count n > 1 and no --grid, image i goes to
OUT-i.png (out.png -> out-0.png, out-1.png, ...); with --grid, all n go into one PNG, ceil(sqrt(n))
columns, row-major, no padding.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import rin
from rin.classes import ClassCatalog
from rin.diffusion import sample


def parse_class(value: str | None, cfg: rin.RINConfig, checkpoint_dir: str | None = None) -> int | None:
    """The model row of --class (an id, a name or a synonym; see rin.classes), None without one."""
    if value is None or not value.strip():
        return None
    name = Path(checkpoint_dir).name if checkpoint_dir else "model"
    return ClassCatalog(cfg, name, checkpoint_dir).resolve(value)


def clip_strip(pixels: np.ndarray) -> np.ndarray:
    """(F, H, W, C) uint8 -> (H, F*W, C): the frames side by side."""
    return np.concatenate(list(pixels), axis=1)


def to_image(array: np.ndarray) -> Image.Image:
    """(H, W, C) uint8 with C = 1, 3 or 4 -> PIL image."""
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0], mode="L")
    if array.shape[2] in (3, 4):
        return Image.fromarray(array)
    raise ValueError(f"cannot write {array.shape[2]} channels as PNG")


def grid(images: list[np.ndarray]) -> np.ndarray:
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w, c = images[0].shape
    out = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        out[r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="checkpoint directory (config.json + model.safetensors)")
    ap.add_argument("--class", dest="klass", help="class index or name")
    ap.add_argument("--seed", type=int, default=0, help="64-bit seed (0 ... 2^64 - 1)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--sampler", choices=("ddim", "ddpm"))
    ap.add_argument("--schedule", choices=("cosine", "sigmoid", "linear"))
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--grid", action="store_true", help="write all images into one PNG")
    ap.add_argument("--no-carry", action="store_true", help="reset the latents every step (evaluation only)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model = rin.load_checkpoint(args.checkpoint)
        cfg = model.cfg
        defaults = cfg.sampling
        steps = args.steps if args.steps is not None else int(defaults.get("steps", 50))
        if not 1 <= steps <= 1000:
            raise ValueError("--steps must be in 1...1000")
        if not 1 <= args.count <= 16:
            raise ValueError("--count must be in 1...16")
        if not 0 <= args.seed < 2 ** 64:
            raise ValueError("--seed must be in 0...2^64-1")
        guidance = args.guidance if args.guidance is not None else float(defaults.get("guidance", 0.0))
        if model.null_class is None and args.guidance is None:
            guidance = 0.0  # a config default cannot ask for what the model lacks
        result = sample(model, class_index=parse_class(args.klass, cfg, args.checkpoint), seed=args.seed, steps=steps,
                        sampler=args.sampler or defaults.get("sampler", "ddim"),
                        schedule=args.schedule or defaults.get("schedule", "cosine"),
                        guidance=guidance, count=args.count, carry=not args.no_carry)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    images = [clip_strip(p) for p in result.pixels]
    out = Path(args.output)
    if args.count == 1 or args.grid:
        to_image(grid(images) if args.grid else images[0]).save(out)
        print(f"wrote {out}")
    else:
        for i, img in enumerate(images):
            path = out.with_name(f"{out.stem}-{i}{out.suffix or '.png'}")
            to_image(img).save(path)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
