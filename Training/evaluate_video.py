"""Evaluates a class-conditional video RIN trained on moving CIFAR-10 clips (video_data.py).

For each setting (every --guidance weight, with --compare-carry also with the latents reset every
step) it samples --per-class clips of every class with the PyTorch reference sampler (one batched
run per class, seed --seed + class, the same noise in every setting) and scores every frame with
the CIFAR-10 classifier of classifier.py (cached in Training/scratch/classifier/). Printed as a
markdown table, one row per setting:

  frame acc    fraction of all frames the classifier assigns to the requested class
  clip acc     fraction of clips whose frames' majority vote is the requested class
  consistent   fraction of consecutive frame pairs with the same predicted class (any class)
  same all     fraction of clips whose frames all get one predicted class
  change       mean absolute pixel change between consecutive frames (0-255 scale)

A first row scores real clips (video_data.clips of CIFAR-10 test images, the same motion
distribution as training): the reference for what the classifier and the motion give on data.

    python Training/evaluate_video.py --checkpoint checkpoints/cifar10-video --per-class 10 \\
        --guidance 0,3 --compare-carry --strip samples.png --animated samples-animated.png
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import classifier  # noqa: E402
import data  # noqa: E402
import rin  # noqa: E402
import video_data  # noqa: E402
from rin import diffusion  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--steps", type=int, help="default: the config's sampling.steps")
    parser.add_argument("--guidance", default=None, help="weights, e.g. 0,3 (default: the config's)")
    parser.add_argument("--compare-carry", action="store_true", help="also sample with the latents reset every step")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--classifier-dir", default=classifier.DEFAULT_DIR)
    parser.add_argument("--classifier-epochs", type=int, default=3)
    parser.add_argument("--strip", metavar="PNG", help="one row per class: 2 clips, frames side by side "
                                                        "(first setting)")
    parser.add_argument("--animated", metavar="PNG", help="an animated PNG of a 10 x 4 grid of clips (first setting)")
    parser.add_argument("--real-clips", type=int, default=500, help="real clips scored for the reference row")
    return parser.parse_args(argv)


def scores(model, clips_uint8, requested):
    """Metrics of uint8 clips (N, F, H, W, C) with requested classes (N,)."""
    n, frames = clips_uint8.shape[:2]
    logits = classifier.predict_logits(model, clips_uint8.reshape(n * frames, *clips_uint8.shape[2:]))
    predicted = logits.argmax(1).numpy().reshape(n, frames)
    requested = np.asarray(requested)[:, None]
    votes = np.array([np.bincount(row, minlength=10).argmax() for row in predicted])
    change = np.abs(np.diff(clips_uint8.astype(np.int16), axis=1)).mean()
    per_class = [float((predicted[requested[:, 0] == c] == c).mean()) if (requested[:, 0] == c).any() else float("nan")
                 for c in range(10)]
    return {
        "frame_acc": float((predicted == requested).mean()),
        "clip_acc": float((votes == requested[:, 0]).mean()),
        "consistent": float((predicted[:, 1:] == predicted[:, :-1]).mean()),
        "same_all": float((predicted == predicted[:, :1]).all(axis=1).mean()),
        "change": float(change),
        "per_class": per_class,
    }


def row(label, guidance, carry, count, result, seconds):
    per_class = " | ".join(f"{100 * v:.0f}" for v in result["per_class"])
    return (f"| {label} | {guidance} | {carry} | {count} | {100 * result['frame_acc']:.1f}% | "
            f"{100 * result['clip_acc']:.1f}% | {100 * result['consistent']:.1f}% | {100 * result['same_all']:.1f}% | "
            f"{result['change']:.1f} | {per_class} | {seconds:.0f} |")


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = rin.load_checkpoint(args.checkpoint)
    cfg = model.cfg
    steps = args.steps or int(cfg.sampling.get("steps", 20))
    weights = ([float(w) for w in args.guidance.split(",")] if args.guidance
               else [float(cfg.sampling.get("guidance", 0.0))])
    judge, info = classifier.get_classifier(args.classifier_dir, args.classifier_epochs)
    print(f"classifier: {100 * info['test_accuracy']:.1f}% CIFAR-10 test accuracy ({info['epochs']} epochs)")
    header = ("| clips | guidance | latents | clips | frame acc | clip acc | consistent | same all | change | "
              + " | ".join(name[:5] for name in data.CLASS_NAMES) + " | seconds |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))

    images, labels = data.load_split("test")
    real, real_labels, _, _ = video_data.clips(torch.from_numpy(images), torch.from_numpy(labels), args.real_clips,
                                               seed=args.seed, frames=cfg.frames)
    print(row("real (test images)", "-", "-", args.real_clips,
              scores(judge, video_data.to_uint8(real).numpy(), real_labels.numpy()), 0), flush=True)

    settings = [(w, True) for w in weights] + ([(w, False) for w in weights] if args.compare_carry else [])
    first = None
    for guidance, carry in settings:
        started = time.time()
        clips, requested = [], []
        for c in range(cfg.num_classes):
            result = diffusion.sample(model, class_index=c, seed=args.seed + c, steps=steps, sampler="ddim",
                                      schedule="cosine", guidance=guidance, count=args.per_class, carry=carry)
            clips.append(result.pixels)
            requested += [c] * args.per_class
        clips = np.concatenate(clips)  # (N, F, H, W, C)
        print(row(f"{steps} steps ddim", guidance, "carry" if carry else "reset", len(clips),
                  scores(judge, clips, requested), time.time() - started), flush=True)
        if first is None:
            first = clips
    if args.strip or args.animated:
        from PIL import Image

        per = args.per_class
        gap = 2
        if args.strip:
            rows = []
            for c in range(cfg.num_classes):
                cells = []
                for k in range(min(2, per)):
                    for f in range(cfg.frames):
                        cells.append(first[c * per + k, f])
                        cells.append(np.zeros((cfg.height, gap if f < cfg.frames - 1 else 3 * gap, 3), np.uint8))
                rows.append(np.concatenate(cells[:-1], axis=1))
                rows.append(np.zeros((gap, rows[-1].shape[1], 3), np.uint8))
            Image.fromarray(np.concatenate(rows[:-1], axis=0)).save(args.strip)
            print(f"wrote {args.strip}")
        if args.animated:
            columns = min(4, per)
            frames = []
            for f in range(cfg.frames):
                grid = np.zeros((cfg.num_classes * (cfg.height + gap) - gap, columns * (cfg.width + gap) - gap, 3), np.uint8)
                for c in range(cfg.num_classes):
                    for k in range(columns):
                        top, left = c * (cfg.height + gap), k * (cfg.width + gap)
                        grid[top:top + cfg.height, left:left + cfg.width] = first[c * per + k, f]
                frames.append(Image.fromarray(grid))
            fps = int(cfg.sampling.get("fps", 8))
            frames[0].save(args.animated, save_all=True, append_images=frames[1:], duration=1000 // fps, loop=0)
            print(f"wrote {args.animated}")


if __name__ == "__main__":
    main()
