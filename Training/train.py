"""Train a class-conditional RIN on CIFAR-10 (32x32), Tiny ImageNet (64x64) or moving CIFAR-10 clips (video, see
video_data.py) with the recipe of Jabri, Fleet, Chen, "Scalable Adaptive Computation for Iterative Generation"
(ICML 2023) and its appendix of hyperparameters.

Recipe: the config's prediction target (v for the bundled model), sigmoid(-3, 3, 0.9) training schedule
(the config's training.schedule), MSE on the target, latent self-conditioning at the config's rate
(0.9: a first pass without gradient gives Z~, the trained pass takes stop_grad(Z~)), label dropout to
the null class (0.1), dropout in the latent FFs, horizontal flips, AdamW with linear warm-up and an
optional cosine decay, gradient clipping, and an EMA of the weights: the EMA is what gets exported.

    # CPU smoke test (float32; see --bf16 below)
    python Training/train.py --config Training/configs/cifar10-tiny.json --run-dir Training/runs/tiny \
        --time-limit 2 --export Training/runs/tiny/export
    # the GPU command is in Training/README.md

Run directory: `state.pt` (model, EMA, optimizer, step, RNG, training seconds), written atomically every
--checkpoint-every minutes and at the end; `--resume` continues from it. `train.log` gets the progress
lines. `--export DIR` writes DIR/config.json (with training metadata) and DIR/model.safetensors (EMA
weights, --export-dtype) at every periodic save and when training stops (time limit, --steps, Ctrl-C or
SIGTERM).
"""

import argparse
import json
import math
import os
import platform
import shutil
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import rin  # noqa: E402
import video_data  # noqa: E402
from rin import diffusion  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="model config JSON (Training/configs/)")
    parser.add_argument("--run-dir", required=True, help="folder for state.pt and train.log")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/state.pt if it exists")
    parser.add_argument("--export", metavar="DIR", help="write the EMA checkpoint here when training stops")
    parser.add_argument("--export-dtype", default="float16", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--preview", metavar="PNG",
                        help="at the end, write a 10 x 8 sample grid (DDIM 50, guidance 3; 10 classes)")
    parser.add_argument("--log", metavar="FILE", help="progress log (default RUN_DIR/train.log)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--dataset", choices=["cifar10", "tiny-imagenet", "cifar10-video"],
                        help="training data (default: cifar10 for 32x32 configs with 10 classes, tiny-imagenet for "
                             "64x64 configs with 200, cifar10-video for 32x32 video configs with 10: each clip one "
                             "CIFAR-10 image moving, video_data.py)")
    parser.add_argument("--data-npz", metavar="PATH",
                        help="the train split as one .npz (data.py --pack for CIFAR-10; images+labels arrays "
                             "for either) instead of ../shared")
    parser.add_argument("--data-source", help="folder with the data set's archives (default: ../shared/data/DATASET)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--betas", default="0.9,0.99")
    parser.add_argument("--warmup", type=int, default=500, help="linear warm-up steps")
    parser.add_argument("--decay-minutes", type=float, default=0.0,
                        help="cosine-decay the LR to --min-lr-ratio over this many minutes of training time "
                             "(default: the --time-limit when one is given, else constant LR)")
    parser.add_argument("--min-lr-ratio", type=float, default=0.05)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--ema-decay", type=float, default=0.9995)
    parser.add_argument("--latent-dropout", type=float, default=0.1, help="dropout in the latent FFs")
    parser.add_argument("--self-cond-rate", type=float, help="default: the config's training.self_conditioning_rate")
    parser.add_argument("--label-dropout", type=float, help="default: the config's training.label_dropout")
    parser.add_argument("--no-flip", action="store_true")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast (use on CUDA; on CPUs without AVX512-BF16 it is ~40x slower)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (falls back to eager on error)")
    parser.add_argument("--steps", type=int, default=0, help="stop after this many optimizer steps (0 = no limit)")
    parser.add_argument("--time-limit", type=float, default=0.0, metavar="MINUTES",
                        help="stop cleanly (save, export) after this many minutes of this process's wall time")
    parser.add_argument("--checkpoint-every", type=float, default=5.0, metavar="MINUTES")
    parser.add_argument("--log-every", type=int, default=50, metavar="STEPS")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


class Logger:
    def __init__(self, path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.handle = open(path, "a", buffering=1)

    def __call__(self, message):
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        self.handle.write(line + "\n")


def hardware_string(device):
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} thread(s) (torch {torch.__version__})"


def decay_parameter_groups(model, weight_decay):
    """Weight decay on matrices only; biases, norms, embeddings and the learned tables are exempt."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        exempt = parameter.ndim < 2 or name in ("pos_embed", "latents") or name.startswith("class_embed")
        (no_decay if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(args, step, train_seconds):
    warm = min(1.0, (step + 1) / max(1, args.warmup))
    if args.decay_minutes <= 0:
        return args.lr * warm
    progress = min(1.0, train_seconds / (args.decay_minutes * 60.0))
    ratio = args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return args.lr * warm * ratio


def save_state(path, model, ema, optimizer, step, train_seconds, generator, args):
    state = {
        "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
        "step": step, "train_seconds": train_seconds, "generator": generator.get_state(),
        "cpu_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "args": vars(args),
    }
    temporary = path + ".tmp"
    torch.save(state, temporary)
    os.replace(temporary, path)


def export(ema, cfg, args, directory, step, train_seconds, wall_seconds, hardware, log):
    exported = rin.RINConfig.from_dict(cfg.to_dict())
    training = dict(exported.training)
    training.update({
        "steps": int(step),
        "images_seen": int(step) * args.batch_size,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds_last_session": round(wall_seconds, 1),
        "hardware": hardware,
        "recipe": {
            "optimizer": "AdamW", "lr": args.lr, "betas": args.betas, "weight_decay": args.weight_decay,
            "warmup_steps": args.warmup, "decay_minutes": args.decay_minutes, "min_lr_ratio": args.min_lr_ratio,
            "batch_size": args.batch_size, "grad_clip": args.grad_clip, "ema_decay": args.ema_decay,
            "latent_dropout": args.latent_dropout, "horizontal_flips": not args.no_flip,
            **({"clip_motion": video_data.describe_motion()} if args.dataset == "cifar10-video" else {}),
            "bf16_autocast": args.bf16, "loss": f"MSE on {cfg.prediction}",
        },
        "data": DATASETS[args.dataset]["description"],
    })
    training["self_conditioning_rate"] = args.self_cond_rate
    training["label_dropout"] = args.label_dropout
    training["notes"] = (training.get("notes") or "") + " | trained with Training/train.py; EMA weights"
    exported.training = training
    rin.save_checkpoint(ema, directory, dtype=args.export_dtype, config=exported)
    table = (exported.label_space or {}).get("table")
    if table:  # the whole label space travels with the checkpoint (names of ids the model lacks)
        shutil.copyfile(data.IMAGENET_TABLE, os.path.join(directory, table))
    size = os.path.getsize(os.path.join(directory, "model.safetensors"))
    log(f"exported EMA weights ({args.export_dtype}, {size / 1e6:.1f} MB) and config.json to {directory}")


DATASETS = {
    "cifar10": {"size": 32, "classes": 10,
                "description": "CIFAR-10 train split (50,000 JPEG-decoded images)"},
    "cifar10-video": {"size": 32, "classes": 10, "video": True,
                      "description": "clips made from the CIFAR-10 train split (50,000 JPEG-decoded images): each "
                                     "clip one image panning, zooming and rotating on a reflective canvas "
                                     "(Training/video_data.py)"},
    "tiny-imagenet": {"size": 64, "classes": 200,
                      "description": "Tiny ImageNet train split (100,000 64x64 JPEG-decoded images, 200 ImageNet-1k "
                                     "classes; ImageNet terms: non-commercial research)"},
}
# Tiny ImageNet preview rows: golden retriever (207) first, then nine classes of the set far apart in ImageNet.
PREVIEW_IMAGENET_IDS = (207, 1, 105, 281, 323, 430, 779, 817, 950, 970)


def preview_classes(cfg):
    """The (at most 10) class rows of the preview grid."""
    space = cfg.label_space
    if space is None:
        return list(range(min(10, cfg.num_classes)))
    rows = [space["ids"].index(i) for i in PREVIEW_IMAGENET_IDS if i in space["ids"]]
    rows += [r for r in range(cfg.num_classes) if r not in rows]
    return rows[:10]


def load_training_data(args, device):
    """The train split as (uint8 (N, H, W, 3), int64 (N,)) tensors on the device."""
    if args.data_npz:
        if args.dataset in ("cifar10", "cifar10-video"):
            images, labels = data.load_npz(args.data_npz)
        else:
            with np.load(args.data_npz) as packed:
                images, labels = packed["images"], packed["labels"].astype(np.int64)
    elif args.dataset in ("cifar10", "cifar10-video"):
        images, labels = data.load_split("train", args.data_source or data.DEFAULT_SOURCE)
    else:
        images, labels = data.load_tiny_imagenet("train", args.data_source or data.TINY_SOURCE)
    return torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)


def configure_classes(cfg, args):
    """Picks the dataset and fills in class names (and the ImageNet label space for Tiny ImageNet)."""
    if args.dataset is None:
        if (cfg.height, cfg.num_classes) == (64, 200):
            args.dataset = "tiny-imagenet"
        else:
            args.dataset = "cifar10-video" if cfg.frames > 1 else "cifar10"
    want = DATASETS[args.dataset]
    video = want.get("video", False)
    if (cfg.num_classes != want["classes"] or cfg.height != want["size"] or cfg.width != want["size"]
            or (cfg.frames > 1) != video or cfg.channels != 3):
        sys.exit(f"{args.config}: --dataset {args.dataset} needs {want['size']}x{want['size']} RGB "
                 f"{'clips (image.frames > 1)' if video else 'images'} and {want['classes']} classes")
    if args.dataset in ("cifar10", "cifar10-video"):
        if cfg.class_names is None:
            cfg.class_names = list(data.CLASS_NAMES)
        return
    rows = data.tiny_imagenet_classes(args.data_source or data.TINY_SOURCE)
    cfg.class_names = [name for _, _, name, _ in rows]
    cfg.label_space = {"name": "imagenet-1k", "ids": [index for _, index, _, _ in rows],
                       "table": "imagenet-1k-classes.tsv"}


def write_preview(ema, path, device, log):
    from PIL import Image

    rows = []
    video = ema.cfg.frames > 1
    for class_index in preview_classes(ema.cfg):
        # Images: 8 per class in a row. Clips: 2 per class, each clip's frames side by side.
        result = diffusion.sample(ema, class_index=class_index, seed=class_index, steps=50, sampler="ddim",
                                  schedule="cosine", guidance=3.0 if ema.null_class is not None else 0.0,
                                  count=2 if video else 8)
        frames = result.pixels.reshape(-1, *result.pixels.shape[2:]) if video else result.pixels[:, 0]
        rows.append(np.concatenate(list(frames), axis=1))  # (H, 8 W or 2 F W, C)
    grid = np.concatenate(rows, axis=0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)
    log(f"wrote preview grid {path}")


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    os.makedirs(args.run_dir, exist_ok=True)
    log = Logger(args.log or os.path.join(args.run_dir, "train.log"))
    state_path = os.path.join(args.run_dir, "state.pt")

    cfg = rin.RINConfig.load(args.config)
    try:
        configure_classes(cfg, args)
    except data.DataError as error:
        sys.exit(f"data error: {error}")
    if args.self_cond_rate is None:
        args.self_cond_rate = float(cfg.training.get("self_conditioning_rate", 0.9))
    if args.label_dropout is None:
        args.label_dropout = float(cfg.training.get("label_dropout", 0.1))
    if args.label_dropout > 0 and not cfg.null_class:
        sys.exit("label dropout needs classes.null_class = true in the config")
    if args.decay_minutes <= 0 and args.time_limit > 0:
        args.decay_minutes = args.time_limit
    sigmoid_params = cfg.sigmoid_schedule()
    schedule_kind = (cfg.training.get("schedule") or {}).get("kind", "sigmoid")

    # Data: the whole train split lives on the device as uint8 (150 MB for CIFAR-10, 1.2 GB for Tiny
    # ImageNet); batches are gathered there.
    try:
        images, labels = load_training_data(args, device)  # (N, H, W, 3) uint8, (N,) int64
    except data.DataError as error:
        sys.exit(f"data error: {error}")
    count = images.shape[0]

    model = rin.RIN(cfg, latent_dropout=args.latent_dropout).to(device)
    ema = rin.RIN(cfg).to(device).eval()
    ema.load_state_dict(model.state_dict())
    for parameter in ema.parameters():
        parameter.requires_grad_(False)
    betas = tuple(float(b) for b in args.betas.split(","))
    optimizer = torch.optim.AdamW(decay_parameter_groups(model, args.weight_decay), lr=args.lr, betas=betas,
                                  fused=device.type == "cuda")
    generator = torch.Generator(device=device).manual_seed(args.seed)
    step, train_seconds = 0, 0.0
    if args.resume and os.path.isfile(state_path):
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, train_seconds = state["step"], state["train_seconds"]
        generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["cpu_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        log(f"resumed from {state_path} at step {step} ({train_seconds / 60:.1f} min trained)")
    parameters = sum(p.numel() for p in model.parameters())
    hardware = hardware_string(device)
    log(f"config {args.config}: {parameters / 1e6:.2f}M parameters; {count} images; device {hardware}; "
        f"batch {args.batch_size}, lr {args.lr}, bf16 {args.bf16}, compile {args.compile}, "
        f"self-cond {args.self_cond_rate}, label dropout {args.label_dropout}, latent dropout {args.latent_dropout}")

    forward = model
    if args.compile:
        forward = torch.compile(model)
    null_class = model.null_class
    video = args.dataset == "cifar10-video"
    latent_shape = (cfg.latent_count, cfg.latent_dim)
    ema_params = list(ema.parameters())
    model_params = list(model.parameters())
    ema_buffers_pairs = list(zip(ema.buffers(), model.buffers()))

    def training_step(batch_size):
        index = torch.randint(0, count, (batch_size,), device=device, generator=generator)
        if video:  # (B, F, H, W, 3) in [-1, 1]: each image moving (flips are part of the motion)
            motion = video_data.sample_motion(batch_size, generator, device)
            if args.no_flip:
                motion["flip"].zero_()
            x0 = video_data.render(images[index], motion, cfg.frames)
        else:
            x0 = images[index].float().div_(127.5).sub_(1.0)  # (B, H, W, 3) in [-1, 1]
            if not args.no_flip:
                flip = torch.rand(batch_size, device=device, generator=generator) < 0.5
                x0 = torch.where(flip[:, None, None, None], x0.flip(2), x0)
        classes = labels[index]
        if args.label_dropout > 0:
            drop = torch.rand(batch_size, device=device, generator=generator) < args.label_dropout
            classes = torch.where(drop, torch.full_like(classes, null_class), classes)
        t = torch.rand(batch_size, device=device, generator=generator)
        gamma = diffusion.gamma_tensor(schedule_kind, t, sigmoid_params)  # (B,) clipped
        g = gamma.view(-1, *([1] * (x0.dim() - 1)))
        eps = torch.randn(x0.shape, device=device, generator=generator)
        x_t = diffusion.q_sample(x0, eps, g)
        target = diffusion.target(cfg.prediction, x0, eps, g)
        z_prev = torch.zeros((batch_size, *latent_shape), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            if args.self_cond_rate > 0:
                with torch.no_grad():
                    _, z_first = forward(x_t, gamma, classes, z_prev)
                use = (torch.rand(batch_size, device=device, generator=generator) < args.self_cond_rate)
                z_prev = torch.where(use[:, None, None], z_first.float(), z_prev).detach()
            prediction, _ = forward(x_t, gamma, classes, z_prev)
        loss = F.mse_loss(prediction.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model_params, args.grad_clip)
        optimizer.step()
        return loss.detach()

    stop = {"signal": None}

    def on_signal(number, _frame):
        stop["signal"] = number

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    last_checkpoint = time.time()
    window_start, window_images, window_loss, window_steps = time.time(), 0, torch.zeros((), device=device), 0
    reason = "steps"
    model.train()
    while True:
        if args.steps and step >= args.steps:
            reason = f"--steps {args.steps} reached"
            break
        if args.time_limit and time.time() - started >= args.time_limit * 60:
            reason = f"time limit of {args.time_limit} min reached"
            break
        if stop["signal"] is not None:
            reason = f"signal {stop['signal']}"
            break
        step_started = time.time()
        lr = learning_rate(args, step, train_seconds)
        for group in optimizer.param_groups:
            group["lr"] = lr
        try:
            loss = training_step(args.batch_size)
        except Exception as error:  # torch.compile failures surface on the first call
            if forward is model:
                raise
            log(f"torch.compile failed ({type(error).__name__}: {str(error)[:300]}); continuing eagerly")
            forward = model
            continue
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, model_params, 1 - decay)
            for ema_buffer, buffer in ema_buffers_pairs:
                ema_buffer.copy_(buffer)
        step += 1
        window_loss += loss
        window_steps += 1
        window_images += args.batch_size
        if step % args.log_every == 0 or step == 1:
            mean_loss = (window_loss / window_steps).item()  # synchronises the device
            now = time.time()
            rate = window_images / max(now - window_start, 1e-9)
            log(f"step {step} loss {mean_loss:.4f} lr {lr:.2e} {rate:.1f} images/s "
                f"elapsed {(now - started) / 60:.1f} min trained {(train_seconds + now - step_started) / 60:.1f} min")
            window_start, window_images, window_loss, window_steps = now, 0, torch.zeros((), device=device), 0
        train_seconds += time.time() - step_started
        if time.time() - last_checkpoint >= args.checkpoint_every * 60:
            save_state(state_path, model, ema, optimizer, step, train_seconds, generator, args)
            log(f"saved {state_path} at step {step}")
            if args.export:  # a usable checkpoint exists at every save, not only at the end
                export(ema, cfg, args, args.export, step, train_seconds, time.time() - started, hardware, log)
            last_checkpoint = time.time()

    if device.type == "cuda":
        torch.cuda.synchronize()
    log(f"stopping: {reason}; step {step}, {train_seconds / 60:.1f} min trained")
    save_state(state_path, model, ema, optimizer, step, train_seconds, generator, args)
    log(f"saved {state_path} at step {step}")
    if args.export:
        export(ema, cfg, args, args.export, step, train_seconds, time.time() - started, hardware, log)
    if args.preview:
        write_preview(ema, args.preview, device, log)
    log(f"done in {(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
