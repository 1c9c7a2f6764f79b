#!/usr/bin/env python3
"""Times one sampling step of the PyTorch reference exported to ONNX and run by ONNX Runtime, for
the Swift bench to compare against (the engine an engineer would otherwise reach for on a CPU).

    python Training/bench_onnx.py --threads 2 [--batches 1 2 8] [--configs cifar10-bundled ...]
                                  [--warmup 1] [--repeats 5]

The network is `random_model(cfg, 0)` (random weights of the config, as bench_torch.py uses),
exported with torch.onnx (TorchScript exporter, opset 17, fixed batch) and run by an
onnxruntime.InferenceSession with intra_op_num_threads = --threads, inter_op 1, all graph
optimisations on, worker threads spinning between operators (ORT's default) unless --spinning off. A step is one network pass plus the DDIM update (numpy), latents carried, no
guidance: the same work bench_torch.py and `rind bench` time. Each (config, batch) row runs in its
own child process so that its peak RSS is its own. Prints one JSON object per row on stdout:

    {"config": "cifar10-official", "batch": 1, "threads": 2, "engine": "onnxruntime",
     "seconds_per_step": 0.024, "min_seconds": 0.023, "repeats": 5, "warmup": 1,
     "peak_rss_bytes": 512000000, "onnxruntime": "1.32.0", "cpu_capability": "AVX512"}

seconds_per_step is the median of `repeats` timed steps after `warmup` untimed ones (with the hidden
--lockstep flag, of the bursts of steps `rind bench` asks for: bench_torch.time_steps). Needs the
`onnx` and `onnxruntime` packages (PyPI) beside torch.
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def export(cfg, batch: int, path: Path) -> None:
    """Writes the ONNX graph of random_model(cfg, 0) for a fixed batch to `path`."""
    import torch

    from random_checkpoint import random_model
    from rin.diffusion import initial_noise

    model = random_model(cfg, 0)
    shape = (cfg.frames, cfg.height, cfg.width, cfg.channels)
    x = initial_noise(1, batch, shape)
    gamma = torch.full((batch,), 0.5)
    z = model.zero_latents(batch)
    args = (x, gamma, torch.zeros(batch, dtype=torch.long) if cfg.num_classes > 0 else None, z)
    names = ["x", "gamma", "classes", "z_prev"] if cfg.num_classes > 0 else ["x", "gamma", "z_prev"]

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *a):
            if cfg.num_classes > 0:
                return self.inner(a[0], a[1], a[2], a[3])
            return self.inner(a[0], a[1], None, a[2])

    inputs = tuple(a for a in args if a is not None)
    # The tracer warns that gamma's and the classes' as_tensor become constants; they do not (the
    # inputs already are tensors), and check_export proves it with other values.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapped(model), inputs, str(path), input_names=names,
                          output_names=["prediction", "z"], opset_version=17, dynamo=False)


def check_export(cfg, batch: int, session) -> float:
    """Largest |ORT - torch| over both outputs at a gamma, class and Z_prev other than the ones the
    graph was traced with, so a traced-in constant would show; fails above 1e-3."""
    import numpy as np
    import torch

    from random_checkpoint import random_model

    model = random_model(cfg, 0)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn((batch, cfg.frames, cfg.height, cfg.width, cfg.channels), generator=gen)
    gamma = torch.linspace(0.1, 0.9, batch)
    z = torch.randn((batch, cfg.latent_count, cfg.latent_dim), generator=gen)
    classes = (torch.arange(batch) % max(cfg.num_classes, 1)) + 1 if cfg.num_classes > 0 else None
    with torch.no_grad():
        want = model(x, gamma, classes, z)
    feeds = {"x": x.numpy(), "gamma": gamma.numpy(), "z_prev": z.numpy()}
    if classes is not None:
        feeds["classes"] = classes.numpy()
    got = session.run(None, feeds)
    deviation = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
    if deviation > 1e-3:
        raise SystemExit(f"bench_onnx: the ONNX graph differs from torch by {deviation}")
    return deviation


def run_row(config: str, batch: int, threads: int, warmup: int, repeats: int, spinning: bool = True,
            lockstep: bool = False) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    torch.set_num_threads(threads)
    import rin
    from rin.diffusion import clip_gamma, cosine_gamma, initial_noise

    cfg = rin.RINConfig.load(HERE / "configs" / f"{config}.json")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rin.onnx"
        export(cfg, batch, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime's worker threads spin between operators by default; "off" lets them sleep,
        # as rind's oneDNN threads do (a fairer match on a machine shared with other work).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    deviation = check_export(cfg, batch, session)
    shape = (cfg.frames, cfg.height, cfg.width, cfg.channels)
    x = initial_noise(1, batch, shape).numpy().astype(np.float32)
    z = np.zeros((batch, cfg.latent_count, cfg.latent_dim), dtype=np.float32)
    classes = np.zeros(batch, dtype=np.int64)
    steps = 50
    if cfg.prediction != "v":
        raise SystemExit(f"bench_onnx: only v-prediction configs are timed (got {cfg.prediction})")

    def step(k: int) -> None:
        nonlocal x, z
        g = clip_gamma(cosine_gamma(1 - (k % steps) / steps))
        g_next = clip_gamma(cosine_gamma(1 - (k % steps + 1) / steps))
        feeds = {"x": x, "gamma": np.full((batch,), g, dtype=np.float32), "z_prev": z}
        if cfg.num_classes > 0:
            feeds["classes"] = classes
        out, z = session.run(None, feeds)
        # DDIM update for v-prediction, as rin.diffusion does it (x0 clamped, eps recomputed).
        sg, s1g = math.sqrt(g), math.sqrt(1 - g)
        x0 = np.clip(sg * x - s1g * out, -1, 1)
        eps = (x - sg * x0) / s1g
        x = (math.sqrt(g_next) * x0 + math.sqrt(1 - g_next) * eps).astype(np.float32)

    from bench_torch import time_steps

    times = time_steps(step, warmup, repeats, lockstep)
    return {
        "config": config, "batch": batch, "threads": threads, "engine": "onnxruntime",
        "seconds_per_step": statistics.median(times), "min_seconds": min(times),
        "repeats": len(times), "warmup": warmup,
        # ru_maxrss is in KiB on Linux; it includes the export (torch), so it is an upper bound.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "onnxruntime": ort.__version__, "max_abs_diff_vs_torch": deviation, "spinning": spinning,
        # The widest vector unit torch found in this process's CPUID (AVX512, AVX2 or DEFAULT): what
        # `rind bench --cpuid-mask` left visible to the libraries here, MLAS included.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def main(argv: list[str] | None = None) -> int:
    from bench_torch import arguments_valid, bench_parser, run_rows

    ap = bench_parser(__doc__, [1, 2, 8], ["cifar10-bundled", "cifar10-official", "imagenet64-official"])
    ap.add_argument("--spinning", choices=["on", "off"], default="on",
                    help="ONNX Runtime's intra-op threads spin between operators (its default) or sleep")
    args = ap.parse_args(argv)
    if not arguments_valid(args):
        return 2
    if args.row:
        print(json.dumps(run_row(args.row[0], int(args.row[1]), args.threads, args.warmup, args.repeats,
                                 args.spinning == "on", args.lockstep)),
              flush=True)
        return 0
    return run_rows(__file__, args, ["--spinning", args.spinning])


if __name__ == "__main__":
    sys.exit(main())
