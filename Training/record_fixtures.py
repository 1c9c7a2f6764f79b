#!/usr/bin/env python3
"""Records the parity fixtures the Swift tests compare against (Tests/Fixtures/README.md says what
every file holds).

    /work/venv/bin/python Training/record_fixtures.py [--out Tests/Fixtures/parity]

Deterministic: one torch thread, no TF32, fixed seeds; rerunning rewrites identical files (checked by
Training/tests/test_reference.py). Every tensor is float32 so the engine's own safetensors reader can
load the fixtures; integers (classes, seeds, pixels' shapes) are in the JSON files and the pixels are
stored as float32 holding whole numbers 0...255.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import rin
from random_checkpoint import random_model
from rin.diffusion import sample
from rin.model import patchify, time_features
from rin.noise import noise, noise_key

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "Tests" / "Fixtures" / "parity"
STEPS = 6
BIG_SEED = 0xDEADBEEFCAFEF00D  # > 2^63: exercises the full unsigned range

# name -> (config file in Training/configs, weight seed, runs). A run: (run name, sampler, schedule,
# guidance, class (None = unconditional / null class), seed, carry).
FIXTURES: dict[str, tuple[str, int, list[tuple]]] = {
    "image-v-cond": ("tiny-image-v.json", 11, [
        ("ddim", "ddim", "cosine", 0.0, 1, 7, True),
        ("ddpm", "ddpm", "cosine", 0.0, 2, BIG_SEED, True),
        ("ddim-guided", "ddim", "sigmoid", 1.5, 0, 8, True),
        ("ddpm-guided", "ddpm", "linear", 2.0, 1, 9, True),
        ("ddim-null-class", "ddim", "cosine", 0.0, None, 10, True),
        ("ddim-no-carry", "ddim", "cosine", 0.0, 1, 7, False),
    ]),
    "image-eps-uncond": ("tiny-image-eps.json", 12, [
        ("ddim", "ddim", "cosine", 0.0, None, 21, True),
        ("ddpm", "ddpm", "cosine", 0.0, None, BIG_SEED, True),
        ("ddim-no-carry", "ddim", "linear", 0.0, None, 21, False),
    ]),
    "gray-x0": ("tiny-gray-x0.json", 13, [
        ("ddim", "ddim", "sigmoid", 0.0, 1, 31, True),
        ("ddpm", "ddpm", "cosine", 0.0, 0, 32, True),
        ("ddpm-no-carry", "ddpm", "cosine", 0.0, 0, 32, False),
    ]),
    "video-v-cond": ("tiny-video.json", 14, [
        ("ddim", "ddim", "cosine", 0.0, 3, 41, True),
        ("ddpm-guided", "ddpm", "cosine", 2.0, 2, 42, True),
        ("ddim-guided-no-carry", "ddim", "cosine", 2.0, 0, 43, False),
    ]),
}

NOISE_CASES = [(0, 0, 0, 8), (1, 0, 0, 7), (1, 1, 0, 6), (1, 0, 1, 6), (42, 3, 17, 5),
               (BIG_SEED, 0, 0, 9), (2 ** 64 - 1, 15, 1000, 4), (2 ** 63, 2, 3, 3)]


def set_deterministic() -> None:
    torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.use_deterministic_algorithms(True)


def shape_of(t: torch.Tensor) -> list[int]:
    return list(t.shape)


@torch.no_grad()
def record_forward(model: rin.RIN, out_dir: Path, seed: int) -> None:
    """Batch 2, non-zero z_prev, plus the intermediate values that help find a mismatch."""
    cfg = model.cfg
    gen = torch.Generator().manual_seed(seed)
    B = 2
    x = torch.randn((B, cfg.frames, cfg.height, cfg.width, cfg.channels), generator=gen).clamp(-2.5, 2.5)
    gamma = torch.tensor([0.23, 0.91], dtype=torch.float32)
    if cfg.num_classes == 0:
        classes = None
    else:
        second = model.null_class if model.null_class is not None else cfg.num_classes - 1
        classes = torch.tensor([1 % cfg.num_classes, second], dtype=torch.long)
    z_prev = torch.randn((B, cfg.latent_count, cfg.latent_dim), generator=gen)

    prediction_zero, z_zero = model(x, gamma, classes, None)  # the same inputs with z_prev = zeros
    debug: dict[str, torch.Tensor] = {}
    hooks = [block.register_forward_hook(
        lambda _m, _i, o, b=b: debug.update({f"debug.block{b}.x": o[0].clone(), f"debug.block{b}.z": o[1].clone()}))
        for b, block in enumerate(model.blocks)]
    hooks.append(model.self_cond.register_forward_hook(
        lambda _m, _i, o: debug.update({"debug.latent_init": o.clone()})))
    prediction, z = model(x, gamma, classes, z_prev)
    for h in hooks:
        h.remove()

    feats = time_features(gamma, cfg.latent_dim)
    tensors = {
        "x": x, "gamma": gamma, "z_prev": z_prev,
        "prediction": prediction, "z": z,
        "prediction_zero_prev": prediction_zero, "z_zero_prev": z_zero,
        "debug.patches": patchify(x, cfg.patch_frames, cfg.patch_size),
        "debug.interface_init": model.patch_norm(model.patch_embed(patchify(x, cfg.patch_frames, cfg.patch_size)))
        + model.pos_embed,
        "debug.time_features": feats,
        "debug.time_token": model.time_mlp(feats),
        **debug,
    }
    tensors = {k: v.to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(out_dir / "forward.safetensors"))
    (out_dir / "forward.safetensors").chmod(0o644)
    meta = {
        "batch": B,
        "gamma": [float(g) for g in gamma],
        "class": None if classes is None else [int(c) for c in classes],
        "tensors": {k: {"shape": shape_of(v), "dtype": "F32"} for k, v in sorted(tensors.items())},
        "notes": "x, prediction: (B, frames, height, width, channels) channels last (frames = 1 for images). "
                 "prediction/z: outputs with the given non-zero z_prev; *_zero_prev: the same inputs with z_prev = 0. "
                 "debug.*: intermediates of the non-zero z_prev pass (see Tests/Fixtures/README.md).",
    }
    (out_dir / "forward.json").write_text(json.dumps(meta, indent=2) + "\n")


@torch.no_grad()
def record_trajectories(model: rin.RIN, out_dir: Path, runs: list[tuple]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    described = []
    count = 2
    for name, sampler, schedule, guidance, klass, seed, carry in runs:
        r = sample(model, class_index=klass, seed=seed, steps=STEPS, sampler=sampler, schedule=schedule,
                   guidance=guidance, count=count, carry=carry)
        tensors[f"{name}.final_x0"] = r.final_x0
        tensors[f"{name}.step_x0"] = r.step_x0
        tensors[f"{name}.pixels"] = torch.from_numpy(r.pixels.astype(np.float32))
        tensors[f"{name}.x_start"] = rin.diffusion.initial_noise(seed, count, tuple(r.final_x0.shape[1:]))
        described.append({
            "name": name, "sampler": sampler, "schedule": schedule, "guidance": guidance,
            "class": klass, "seed": seed, "seed_string": str(seed), "steps": STEPS, "count": count,
            "carry_latents": carry, "gammas": [[g, gn] for g, gn in r.gammas],
            "tensors": {k.split(".", 1)[1]: k for k in tensors if k.startswith(name + ".")},
        })
    tensors = {k: v.to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(out_dir / "trajectories.safetensors"))
    (out_dir / "trajectories.safetensors").chmod(0o644)
    meta = {
        "runs": described,
        "tensors": {k: {"shape": shape_of(v), "dtype": "F32"} for k, v in sorted(tensors.items())},
        "notes": "final_x0 (count, F, H, W, C); step_x0 (steps, count, F, H, W, C), the clipped x0 of each step "
                 "(after guidance); pixels (count, F, H, W, C) whole numbers 0...255 as F32; x_start = noise(seed, i, 0). "
                 "class null = unconditional (no class token) or, on a model with a null class, the null row. "
                 "gammas: [g, g'] per step, clipped, computed in float64.",
    }
    (out_dir / "trajectories.json").write_text(json.dumps(meta, indent=2) + "\n")


def record_noise(path: Path) -> None:
    cases = []
    for seed, i, step, count in NOISE_CASES:
        values = noise(seed, i, step, count)
        cases.append({"seed": seed, "seed_string": str(seed), "i": i, "step": step, "count": count,
                      "key_hex": f"{int(noise_key(seed, i, step)):016x}",
                      "values": [float(v) for v in values],
                      "bits_hex": [f"{int(b):08x}" for b in values.view(np.uint32)]})
    path.write_text(json.dumps({"recipe": "checkpoints/README.md, 'Noise: one recipe for Swift and Python'",
                                "cases": cases}, indent=2) + "\n")


def record_dtypes(out_dir: Path) -> None:
    """The gray-x0 weights exported as float16 and bfloat16 checkpoints, with the exact float32 values
    their tensors decode to, so the engine's F16/BF16 -> F32 conversion can be checked bit for bit."""
    cfg = rin.RINConfig.load(HERE / "configs" / FIXTURES["gray-x0"][0])
    model = random_model(cfg, FIXTURES["gray-x0"][1])
    for dtype in ("float16", "bfloat16"):
        rin.save_checkpoint(model, out_dir / dtype, dtype=dtype, metadata={"format": "pt"})
        from safetensors.torch import load_file
        upcast = {k: v.to(torch.float32) for k, v in load_file(str(out_dir / dtype / "model.safetensors")).items()}
        save_file(upcast, str(out_dir / f"upcast-{dtype}.safetensors"))
        (out_dir / f"upcast-{dtype}.safetensors").chmod(0o644)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    set_deterministic()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (config_file, weight_seed, runs) in FIXTURES.items():
        cfg = rin.RINConfig.load(HERE / "configs" / config_file)
        model = random_model(cfg, weight_seed)
        d = args.out / name
        rin.save_checkpoint(model, d, dtype="float32", metadata={"format": "pt"})
        model = rin.load_checkpoint(d)  # record from exactly the weights that were written
        record_forward(model, d, weight_seed + 1000)
        record_trajectories(model, d, runs)
        print(f"{name}: {sum(f.stat().st_size for f in d.iterdir())} bytes")
    record_dtypes(args.out / "dtypes")
    record_noise(args.out / "noise.json")
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"total {total} bytes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
