#!/usr/bin/env python3
"""Times one sampling step of the PyTorch reference on the official configs (random weights), for
the Swift bench to compare against.

    python Training/bench_torch.py --threads 2 [--batches 1 8] [--configs cifar10-official imagenet64-official]
                                   [--warmup 1] [--repeats 5]

A step is one network pass plus the DDIM update, with the latent carry and no guidance, in float32
under torch.inference_mode. Each (config, batch) row runs in its own child process so that its peak
RSS is its own. Prints one JSON object per row on stdout:

    {"config": "cifar10-official", "batch": 1, "threads": 2, "dtype": "float32",
     "seconds_per_step": 0.071, "min_seconds": 0.070, "repeats": 5, "warmup": 1,
     "peak_rss_bytes": 512000000, "parameters": 30951180, "torch": "2.13.0+cpu",
     "cpu_capability": "AVX512"}

seconds_per_step is the median of `repeats` timed steps after `warmup` untimed ones. `rind bench`
runs a row with the hidden --lockstep flag to alternate short bursts of steps with the other
engines' rows (see time_steps).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent



def time_steps(step, warmup: int, repeats: int, lockstep: bool = False) -> list[float]:
    """Calls step(k) for k in 0..warmup+repeats-1; returns the seconds of the last `repeats` calls.

    With `lockstep` (`rind bench` has the engines take turns) the steps run in bursts when the
    parent asks: this prints {"ready": true}; then for each line "burst S" on stdin it runs one
    untimed step (the caches and threads warm again after another engine's turn) and then timed
    steps until they add up to S seconds (at least one), and prints {"seconds": [their seconds]};
    on "done" or the end of stdin it returns the timed steps of every burst after the first
    `warmup` bursts.
    """
    def timed(k: int) -> float:
        start = time.perf_counter()
        step(k)
        return time.perf_counter() - start

    times = []
    if lockstep:
        print(json.dumps({"ready": True}), flush=True)
        k = bursts = 0
        for line in sys.stdin:
            words = line.split()
            if words == ["done"]:
                break
            if len(words) != 2 or words[0] != "burst":
                raise SystemExit(f"bench: unknown lockstep command {line.strip()!r}")
            budget = float(words[1])
            step(k)
            k += 1
            burst = []
            while not burst or sum(burst) < budget:
                burst.append(timed(k))
                k += 1
            print(json.dumps({"seconds": burst}), flush=True)
            if bursts >= warmup:
                times += burst
            bursts += 1
        if not times:
            raise SystemExit("bench: lockstep ended before any timed burst")
        return times
    for k in range(warmup + repeats):
        elapsed = timed(k)
        if k >= warmup:
            times.append(elapsed)
    return times


def run_row(config: str, batch: int, threads: int, warmup: int, repeats: int, lockstep: bool = False) -> dict:
    import torch

    torch.set_num_threads(threads)
    import rin
    from random_checkpoint import random_model
    from rin.diffusion import clip_gamma, cosine_gamma, eps_from_x0, initial_noise, to_x0

    cfg = rin.RINConfig.load(HERE / "configs" / f"{config}.json")
    model = random_model(cfg, 0)
    shape = (cfg.frames, cfg.height, cfg.width, cfg.channels)
    x = initial_noise(1, batch, shape)
    z = model.zero_latents(batch)
    classes = torch.zeros(batch, dtype=torch.long) if cfg.num_classes > 0 else None
    steps = 50

    def step(k: int) -> None:
        nonlocal x, z
        g = clip_gamma(cosine_gamma(1 - (k % steps) / steps))
        g_next = clip_gamma(cosine_gamma(1 - (k % steps + 1) / steps))
        out, z = model(x, torch.full((batch,), g), classes, z)
        x0 = to_x0(cfg.prediction, out, x, g).clamp(-1, 1)
        eps = eps_from_x0(x0, x, g)
        x = math.sqrt(g_next) * x0 + math.sqrt(1 - g_next) * eps

    with torch.inference_mode():
        times = time_steps(step, warmup, repeats, lockstep)
    return {
        "config": config, "batch": batch, "threads": threads, "dtype": "float32",
        "seconds_per_step": statistics.median(times), "min_seconds": min(times),
        "repeats": len(times), "warmup": warmup,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "parameters": sum(p.numel() for p in model.parameters()), "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),   # AVX512, AVX2 or DEFAULT
    }


def bench_parser(doc: str, batches: list[int], configs: list[str]) -> argparse.ArgumentParser:
    """The options bench_torch.py and bench_onnx.py share, the hidden child-row ones included."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", type=int, nargs="+", default=batches)
    ap.add_argument("--configs", nargs="+", default=configs, help="names of Training/configs/*.json")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--row", nargs=2, metavar=("CONFIG", "BATCH"), help=argparse.SUPPRESS)  # child process
    ap.add_argument("--lockstep", action="store_true", help=argparse.SUPPRESS)  # with --row: steps on request
    return ap


def arguments_valid(args) -> bool:
    if args.threads < 1 or args.warmup < 0 or args.repeats < 1 or any(b < 1 for b in args.batches):
        print("error: --threads, --repeats and --batches must be >= 1, --warmup >= 0", file=sys.stderr)
        return False
    return True


def run_rows(script: str, args, extra: list[str]) -> int:
    """Runs every (config, batch) row as a child process of `script` (`--row CONFIG BATCH`, the
    shared options, then `extra`) and passes its JSON line on: 2 for an unknown config, 1 when a
    row fails."""
    for config in args.configs:
        if not (HERE / "configs" / f"{config}.json").exists():
            print(f"error: no config Training/configs/{config}.json", file=sys.stderr)
            return 2
        for batch in args.batches:
            child = subprocess.run(
                [sys.executable, str(Path(script).resolve()), "--row", config, str(batch),
                 "--threads", str(args.threads), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
                 *extra],
                stdout=subprocess.PIPE, text=True)
            if child.returncode != 0:
                print(f"error: row {config} batch {batch} failed ({child.returncode})", file=sys.stderr)
                return 1
            sys.stdout.write(child.stdout)
            sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__, [1, 8], ["cifar10-official", "imagenet64-official"]).parse_args(argv)
    if not arguments_valid(args):
        return 2
    if args.row:
        print(json.dumps(run_row(args.row[0], int(args.row[1]), args.threads, args.warmup, args.repeats,
                                 args.lockstep)),
              flush=True)
        return 0
    return run_rows(__file__, args, [])


if __name__ == "__main__":
    sys.exit(main())
