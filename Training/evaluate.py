"""Score a class-conditional CIFAR-10 or Tiny ImageNet (64x64, 200 ImageNet classes) RIN checkpoint
with a separately trained classifier.

For each setting (guidance weight x latent carry mode) it samples N images per class with the reference
sampler (rin.diffusion.sample, batched over classes) and reports, as one markdown table row:

- class accuracy: the fraction of samples the classifier (classifier.py, trained once on the train
  split and cached in Training/scratch/classifier/) assigns to the requested class, overall and per class;
- FD: the Frechet distance between the classifier's penultimate features of the samples and of the
  10,000 test images (a small-sample, CIFAR-specific analogue of FID; not comparable with published FIDs);
- FD real: the same distance for N per class real *train* images, the floor at this sample size.

For Tiny ImageNet (chosen from the checkpoint's config) the classifier is 200-way, the held-out set
is the validation split, accuracy is reported top-1 and top-5, and the same figures for N real
validation images per evaluated class are printed first (what the classifier gives real images);
`--classes K` evaluates K classes spread evenly over the 200 (always including golden retriever, 207).

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
    parser.add_argument("--classes", type=int, default=0, help="Tiny ImageNet: evaluate this many classes (0 = all)")
    parser.add_argument("--batch", type=int, default=64, help="images per sampling run")
    parser.add_argument("--dataset", choices=sorted(classifier.NUM_CLASSES),
                        help="default: from the checkpoint (64x64 with 200 classes = tiny-imagenet)")
    parser.add_argument("--classifier-dir", help="default: Training/scratch/classifier[-tiny-imagenet]")
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


def evaluated_classes(cfg, dataset, wanted):
    """Class rows to evaluate: all, or `wanted` spread evenly (Tiny ImageNet keeps 207 among them)."""
    rows = list(range(cfg.num_classes))
    if wanted <= 0 or wanted >= len(rows):
        return rows
    chosen = sorted({rows[round(i * (len(rows) - 1) / max(1, wanted - 1))] for i in range(wanted)})
    space = cfg.label_space or {}
    if 207 in space.get("ids", []):
        golden = space["ids"].index(207)
        if golden not in chosen:
            chosen[len(chosen) // 2] = golden
    return sorted(set(chosen))


def class_label(cfg, row):
    name = cfg.class_names[row] if cfg.class_names else str(row)
    space = cfg.label_space
    return f"{space['ids'][row]} {name}" if space else name


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    model = None
    if args.checkpoint:
        try:
            model = rin.load_checkpoint(args.checkpoint)
        except (rin.ConfigError, OSError) as error:
            sys.exit(f"cannot load {args.checkpoint}: {error}")
    dataset = args.dataset
    if dataset is None:
        dataset = "tiny-imagenet" if model is not None and (model.cfg.height, model.cfg.num_classes) == (64, 200) \
            else "cifar10"
    net, info = classifier.get_classifier(args.classifier_dir or classifier.DEFAULT_DIRS[dataset],
                                          args.classifier_epochs, log=log, dataset=dataset)
    top5_text = f", top-5 {info['test_top5'] * 100:.1f}%" if "test_top5" in info else ""
    print(f"classifier ({dataset}): held-out top-1 {info['test_accuracy'] * 100:.1f}%{top5_text} "
          f"({info['epochs']} epochs, {info['train_seconds']:.0f} s to train, widths {info['widths']})")
    if args.classifier_only:
        return

    (train_images, train_labels), (test_images, test_labels) = classifier.load_dataset(dataset)
    size = 32 if dataset == "cifar10" else 64
    cfg = model.cfg
    if cfg.num_classes != classifier.NUM_CLASSES[dataset] or (cfg.height, cfg.width, cfg.channels, cfg.frames) != (size, size, 3, 1):
        sys.exit(f"{args.checkpoint} is not a {classifier.NUM_CLASSES[dataset]}-class {size}x{size} RGB image model")
    test_features = classifier.extract_features(net, test_images)
    rows = evaluated_classes(cfg, dataset, args.classes)
    # The real-image floor: per_class train images of each evaluated class, chosen with a fixed seed.
    chooser = np.random.default_rng(0)
    real_index = np.concatenate([chooser.choice(np.flatnonzero(train_labels == c), args.per_class, replace=False)
                                 for c in rows])
    fd_real = frechet_distance(classifier.extract_features(net, train_images[real_index]), test_features)
    top5_wanted = classifier.NUM_CLASSES[dataset] > 10
    if top5_wanted:
        # What the classifier gives real held-out images of the same classes, the same number per class.
        held_index = np.concatenate([chooser.choice(np.flatnonzero(test_labels == c), args.per_class, replace=False)
                                     for c in rows])
        logits = classifier.predict_logits(net, test_images[held_index])
        real_top1 = classifier.topk_accuracy(logits, test_labels[held_index], 1)
        real_top5 = classifier.topk_accuracy(logits, test_labels[held_index], 5)
        print(f"real validation images ({args.per_class} per class, {len(rows)} classes): "
              f"top-1 {real_top1 * 100:.1f}%, top-5 {real_top5 * 100:.1f}%")

    steps = args.steps or int(cfg.sampling["steps"])
    sampler = args.sampler or cfg.sampling["sampler"]
    schedule = args.schedule or cfg.sampling["schedule"]
    guidances = args.guidance or [float(cfg.sampling.get("guidance", 0.0))]
    if any(g > 0 for g in guidances) and model.null_class is None:
        sys.exit("guidance > 0 needs a model with a null class")
    carries = [True, False] if args.compare_carry else [not args.no_carry]
    settings = [(g, c) for g in guidances for c in carries]
    trained_steps = cfg.training.get("steps", "?")

    print(f"\ncheckpoint {args.checkpoint} ({trained_steps} training steps); {args.per_class} samples per class, "
          f"{len(rows)} classes; FD against the {len(test_images):,} held-out images; FD real = {args.per_class} real "
          f"train images per class (the floor at this sample size): {fd_real:.2f}\n")
    per_class_columns = len(rows) <= 10
    header = ("| steps | sampler | schedule | guidance | latents | samples | top-1 | "
              + ("top-5 | " if top5_wanted else "") + "FD | FD real | "
              + (" | ".join(class_label(cfg, r)[:12] for r in rows) + " | " if per_class_columns else "")
              + "s/image |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    wanted = [r for r in rows for _ in range(args.per_class)]
    for guidance, carry in settings:
        started = time.time()
        pixels = []
        for start in range(0, len(wanted), args.batch):
            chunk = wanted[start:start + args.batch]
            # Seeds: run j of a setting uses seed (--seed + j), so every setting sees the same noise.
            result = diffusion.sample(model, class_index=chunk, seed=args.seed + start // args.batch, steps=steps,
                                      sampler=sampler, schedule=schedule, guidance=guidance, carry=carry)
            pixels.append(result.pixels[:, 0])  # (n, H, W, 3) uint8
        seconds = time.time() - started
        samples = np.concatenate(pixels)
        logits = classifier.predict_logits(net, samples)
        labels = np.array(wanted)
        top1 = classifier.topk_accuracy(logits, labels, 1)
        top5 = classifier.topk_accuracy(logits, labels, 5)
        hits = (logits.argmax(1).numpy() == labels)
        fd = frechet_distance(classifier.extract_features(net, samples), test_features)
        per_class = [float(hits[labels == r].mean()) for r in rows]
        print(f"| {steps} | {sampler} | {schedule} | {guidance:g} | {'carry' if carry else 'reset'} | "
              f"{len(samples)} | {top1 * 100:.1f}% | " + (f"{top5 * 100:.1f}% | " if top5_wanted else "")
              + f"{fd:.2f} | {fd_real:.2f} | "
              + (" | ".join(f"{h * 100:.0f}" for h in per_class) + " | " if per_class_columns else "")
              + f"{seconds / len(samples):.2f} |", flush=True)
        if args.grid:
            path = grid_path(args.grid, guidance, carry, len(settings) > 1)
            by_class = [samples[labels == r] for r in rows[:10]]
            write_grid(path, by_class)
            log(f"wrote {path}")


if __name__ == "__main__":
    main()
