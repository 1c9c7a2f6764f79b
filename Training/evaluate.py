"""Score a class-conditional CIFAR-10 RIN checkpoint with a separately trained classifier.

For each setting (guidance weight x latent carry mode) it samples N images per class with the reference
sampler (rin.diffusion.sample, one batched run per class) and reports, as one markdown table row:

- class accuracy: the fraction of samples the classifier (classifier.py, trained once on the train
  split and cached in Training/scratch/classifier/) assigns to the requested class, overall and per class;
- FD: the Frechet distance between the classifier's penultimate features of the samples and of the
  10,000 test images (a small-sample, CIFAR-specific analogue of FID; not comparable with published FIDs);
- FD real: the same distance for N per class real *train* images, the floor at this sample size.

    python Training/evaluate.py --checkpoint Training/runs/bundled/export --per-class 20 --guidance 0,1,3
    python Training/evaluate.py --checkpoint DIR --compare-carry --grid out.png

Sampling parameters default to the checkpoint's config.json `sampling` block. Seeds: class c of a
setting uses seed (--seed + c) for all its images, so settings are compared on the same noise.
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
from rin import diffusion  # noqa: E402


def frechet_distance(features_a, features_b):
    """||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2), in float64.

    Uses symmetric eigendecompositions only (S_a^1/2 S_b S_a^1/2 is symmetric PSD and has the same
    eigenvalues as S_a S_b), so no scipy is needed."""
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    cov_a = np.cov(features_a, rowvar=False)
    cov_b = np.cov(features_b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def parse_floats(text):
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("guidance weights must be >= 0")
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="checkpoint directory (config.json + model.safetensors)")
    parser.add_argument("--per-class", type=int, default=20, help="samples per class and setting")
    parser.add_argument("--steps", type=int, help="sampling steps (default: config's sampling.steps)")
    parser.add_argument("--sampler", choices=["ddim", "ddpm"])
    parser.add_argument("--schedule", choices=["cosine", "sigmoid", "linear"])
    parser.add_argument("--guidance", type=parse_floats, help="one or more weights, e.g. 0,1,3 (default: config's)")
    carry = parser.add_mutually_exclusive_group()
    carry.add_argument("--no-carry", action="store_true", help="reset the latents every step")
    carry.add_argument("--compare-carry", action="store_true", help="evaluate with and without the latent carry")
    parser.add_argument("--grid", metavar="OUT.png", help="10 x 8 grid (one row per class) per setting")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--classifier-dir", default=classifier.DEFAULT_DIR)
    parser.add_argument("--classifier-epochs", type=int, default=5, help="epochs when the classifier must be trained")
    parser.add_argument("--classifier-only", action="store_true", help="train/load the classifier, report it, stop")
    args = parser.parse_args(argv)
    if not args.classifier_only and not args.checkpoint:
        parser.error("--checkpoint is required (unless --classifier-only)")
    if args.per_class < 1:
        parser.error("--per-class must be >= 1")
    return args


def grid_path(base, guidance, carry, several):
    if not several:
        return base
    stem, extension = os.path.splitext(base)
    return f"{stem}-g{guidance:g}-{'carry' if carry else 'reset'}{extension or '.png'}"


def write_grid(path, pixels_by_class, columns=8):
    from PIL import Image

    rows = []
    for pixels in pixels_by_class:  # (N, 32, 32, 3) uint8
        chosen = list(pixels[:columns])
        while len(chosen) < columns:
            chosen.append(np.zeros_like(pixels[0]))
        rows.append(np.concatenate(chosen, axis=1))
    grid = np.concatenate(rows, axis=0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    net, info = classifier.get_classifier(args.classifier_dir, args.classifier_epochs, log=log)
    print(f"classifier: test accuracy {info['test_accuracy'] * 100:.1f}% "
          f"({info['epochs']} epochs, {info['train_seconds']:.0f} s to train, widths {info['widths']})")
    if args.classifier_only:
        return

    test_images, _ = data.load_split("test", verbose=False)
    train_images, train_labels = data.load_split("train", verbose=False)
    test_features = classifier.extract_features(net, test_images)
    # The real-image floor: per_class train images of each class, chosen with a fixed seed.
    chooser = np.random.default_rng(0)
    real_index = np.concatenate([chooser.choice(np.flatnonzero(train_labels == c), args.per_class, replace=False)
                                 for c in range(len(data.CLASS_NAMES))])
    fd_real = frechet_distance(classifier.extract_features(net, train_images[real_index]), test_features)

    try:
        model = rin.load_checkpoint(args.checkpoint)
    except (rin.ConfigError, OSError) as error:
        sys.exit(f"cannot load {args.checkpoint}: {error}")
    cfg = model.cfg
    if cfg.num_classes != len(data.CLASS_NAMES) or (cfg.height, cfg.width, cfg.channels, cfg.frames) != (32, 32, 3, 1):
        sys.exit(f"{args.checkpoint} is not a 10-class 32x32 RGB image model")
    steps = args.steps or int(cfg.sampling["steps"])
    sampler = args.sampler or cfg.sampling["sampler"]
    schedule = args.schedule or cfg.sampling["schedule"]
    guidances = args.guidance or [float(cfg.sampling.get("guidance", 0.0))]
    if any(g > 0 for g in guidances) and model.null_class is None:
        sys.exit("guidance > 0 needs a model with a null class")
    carries = [True, False] if args.compare_carry else [not args.no_carry]
    settings = [(g, c) for g in guidances for c in carries]
    trained_steps = cfg.training.get("steps", "?")

    print(f"\ncheckpoint {args.checkpoint} ({trained_steps} training steps); {args.per_class} samples per class; "
          f"FD against the 10,000 test images; FD real = {args.per_class} real train images per class "
          f"(the floor at this sample size): {fd_real:.2f}\n")
    header = ("| steps | sampler | schedule | guidance | latents | samples | class accuracy | FD | FD real | "
              + " | ".join(name[:5] for name in data.CLASS_NAMES) + " | seconds |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for guidance, carry in settings:
        started = time.time()
        pixels_by_class, hits = [], []
        for class_index in range(cfg.num_classes):
            result = diffusion.sample(model, class_index=class_index, seed=args.seed + class_index, steps=steps,
                                      sampler=sampler, schedule=schedule, guidance=guidance,
                                      count=args.per_class, carry=carry)
            pixels = result.pixels[:, 0]  # (N, 32, 32, 3) uint8
            pixels_by_class.append(pixels)
            predicted = classifier.predict_logits(net, pixels).argmax(1).numpy()
            hits.append(float((predicted == class_index).mean()))
        seconds = time.time() - started
        samples = np.concatenate(pixels_by_class)
        fd = frechet_distance(classifier.extract_features(net, samples), test_features)
        accuracy = float(np.mean(hits))
        print(f"| {steps} | {sampler} | {schedule} | {guidance:g} | {'carry' if carry else 'reset'} | "
              f"{len(samples)} | {accuracy * 100:.1f}% | {fd:.2f} | {fd_real:.2f} | "
              + " | ".join(f"{h * 100:.0f}" for h in hits) + f" | {seconds:.0f} |", flush=True)
        if args.grid:
            path = grid_path(args.grid, guidance, carry, len(settings) > 1)
            write_grid(path, pixels_by_class)
            log(f"wrote {path}")


if __name__ == "__main__":
    main()
