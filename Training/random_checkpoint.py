#!/usr/bin/env python3
"""Writes a checkpoint directory with random weights for any config.json (benchmarks, parity tests).

    python Training/random_checkpoint.py --config Training/configs/tiny-image.json -o /tmp/tiny \
        [--seed 0] [--dtype float32|float16|bfloat16]

Unlike the training initialisation, every tensor is drawn so that a wrong index shows: linear
weights N(0, 1/fan_in), biases N(0, 0.1^2), LayerNorm gains 1 + N(0, 0.2^2) and biases N(0, 0.1^2),
embeddings N(0, 0.5^2), and LN0 (`self_cond.out_norm`) NON-zero, gains and biases N(0, 0.5^2), so
that the carried latents change the output.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

import rin
from rin.checkpoint import DTYPES


@torch.no_grad()
def randomize_(model: rin.RIN, seed: int) -> rin.RIN:
    """Overwrites every parameter of `model` from a generator seeded with `seed` (deterministic)."""
    gen = torch.Generator().manual_seed(seed)

    def normal_(p: torch.Tensor, std: float, mean: float = 0.0) -> None:
        p.copy_(torch.randn(p.shape, generator=gen) * std + mean)

    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            normal_(module.weight, module.in_features ** -0.5)
            normal_(module.bias, 0.1)
        elif isinstance(module, nn.LayerNorm):
            if name == "self_cond.out_norm":
                normal_(module.weight, 0.5)
                normal_(module.bias, 0.5)
            else:
                normal_(module.weight, 0.2, mean=1.0)
                normal_(module.bias, 0.1)
        elif isinstance(module, nn.Embedding):
            normal_(module.weight, 0.5)
    normal_(model.pos_embed, 0.5)
    normal_(model.latents, 0.5)
    return model


def random_model(cfg: rin.RINConfig, seed: int) -> rin.RIN:
    torch.manual_seed(seed)
    return randomize_(rin.RIN(cfg), seed).eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="config.json to build the model from")
    ap.add_argument("-o", "--output", required=True, help="checkpoint directory to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    args = ap.parse_args(argv)
    try:
        cfg = rin.RINConfig.load(args.config)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    model = random_model(cfg, args.seed)
    # One metadata key only: safetensors writes the metadata map in hash order, so two keys would make
    # the file's bytes differ from run to run.
    out = rin.save_checkpoint(model, args.output, dtype=args.dtype, metadata={"random_seed": str(args.seed)})
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({params} parameters, {args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
