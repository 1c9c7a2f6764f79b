"""Continuous-time Gaussian diffusion for RIN, as fixed by checkpoints/README.md ("Sampling").

gamma(t) is the signal power: x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps, t in [0, 1].
Schedules: cosine, sigmoid (Chen 2023, "On the importance of noise scheduling"), linear.
Samplers: DDIM (deterministic) and DDPM (ancestral with the official "large" variance), with RIN's
latent carry (Z of step k is Z_prev of step k + 1) or the evaluation-only latent reset, and
classifier-free guidance on the raw network outputs. Schedule values are computed in float64 (Python
floats); the arrays are float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .noise import noise

GAMMA_CLIP = 1e-9


# ---------------------------------------------------------------------------------------- schedules

def clip_gamma(g: float) -> float:
    return min(max(g, GAMMA_CLIP), 1.0 - GAMMA_CLIP)


def cosine_gamma(t: float) -> float:
    return math.cos(math.pi * t / 2) ** 2


def linear_gamma(t: float) -> float:
    return 1.0 - t


def sigmoid_gamma(t: float, start: float = -3.0, end: float = 3.0, tau: float = 0.9) -> float:
    def v(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x / tau))

    return (v(end) - v(t * (end - start) + start)) / (v(end) - v(start))


def gamma_fn(schedule: str, sigmoid_params: tuple[float, float, float] = (-3.0, 3.0, 0.9)):
    """gamma(t) as a Python function of a float, unclipped."""
    if schedule == "cosine":
        return cosine_gamma
    if schedule == "linear":
        return linear_gamma
    if schedule == "sigmoid":
        start, end, tau = sigmoid_params
        return lambda t: sigmoid_gamma(t, start, end, tau)
    raise ValueError(f"unknown schedule {schedule!r}; expected cosine, sigmoid or linear")


def gamma_tensor(schedule: str, t: torch.Tensor,
                 sigmoid_params: tuple[float, float, float] = (-3.0, 3.0, 0.9)) -> torch.Tensor:
    """Vectorised gamma(t) for training (t: any shape), clipped to [1e-9, 1 - 1e-9]."""
    t = t.to(torch.float64)
    if schedule == "cosine":
        g = torch.cos(math.pi * t / 2) ** 2
    elif schedule == "linear":
        g = 1.0 - t
    elif schedule == "sigmoid":
        start, end, tau = sigmoid_params
        v = lambda x: torch.sigmoid(torch.as_tensor(x, dtype=torch.float64) / tau)  # noqa: E731
        g = (v(end) - v(t * (end - start) + start)) / (v(end) - v(start))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    return g.clamp(GAMMA_CLIP, 1 - GAMMA_CLIP).to(torch.float32)


# ------------------------------------------------------------------------------ prediction targets

def to_x0(prediction: str, out: torch.Tensor, x: torch.Tensor, g: float | torch.Tensor) -> torch.Tensor:
    """Network output -> x0 estimate (unclipped). g: scalar or broadcastable tensor."""
    sg, s1g = _sqrt(g), _sqrt(1 - g)
    if prediction == "eps":
        return (x - s1g * out) / sg
    if prediction == "x0":
        return out
    if prediction == "v":
        return sg * x - s1g * out
    raise ValueError(f"unknown prediction {prediction!r}")


def eps_from_x0(x0: torch.Tensor, x: torch.Tensor, g: float | torch.Tensor) -> torch.Tensor:
    return (x - _sqrt(g) * x0) / _sqrt(1 - g)


def target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Training target for a prediction kind; g broadcastable to x0."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return torch.sqrt(g) * eps - torch.sqrt(1 - g) * x0
    raise ValueError(f"unknown prediction {prediction!r}")


def q_sample(x0: torch.Tensor, eps: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(g) x0 + sqrt(1 - g) eps; g broadcastable to x0."""
    return torch.sqrt(g) * x0 + torch.sqrt(1 - g) * eps


def _sqrt(g):
    return torch.sqrt(g) if isinstance(g, torch.Tensor) else math.sqrt(g)


def to_pixels(x0: torch.Tensor) -> np.ndarray:
    """clamp(round((x0 + 1) * 127.5), 0, 255) as uint8; rounding is half away from zero."""
    v = (x0.to(torch.float32) + 1) * 127.5
    r = torch.sign(v) * torch.floor(v.abs() + 0.5)
    return r.clamp(0, 255).to(torch.uint8).cpu().numpy()


# --------------------------------------------------------------------------------------- samplers

@dataclass
class SampleResult:
    """final_x0: (n, F, H, W, C); step_x0: (S, n, F, H, W, C) (the clipped x0 of every step);
    pixels: (n, F, H, W, C) uint8; z: the last step's Z (n, m, L)."""

    final_x0: torch.Tensor
    step_x0: torch.Tensor
    pixels: np.ndarray
    z: torch.Tensor
    gammas: list[tuple[float, float]] = field(default_factory=list)


def initial_noise(seed: int, count: int, shape: tuple[int, ...]) -> torch.Tensor:
    """x_T: image i is noise(seed, i, 0), (count, *shape)."""
    size = int(np.prod(shape))
    return torch.from_numpy(np.stack([noise(seed, i, 0, size).reshape(shape) for i in range(count)]))


@torch.no_grad()
def sample(model, *, class_index, seed: int, steps: int, sampler: str = "ddim",
           schedule: str = "cosine", guidance: float = 0.0, count: int = 1, carry: bool = True,
           x_start: torch.Tensor | None = None) -> SampleResult:
    """One sampling run of `count` images, all of class `class_index` (None = unconditional: the
    null class on a model with one, nothing on an unconditional model), or of one class per image
    when `class_index` is a list (then `count` is its length). Image i starts from noise(seed, i, 0);
    DDPM step k adds noise(seed, i, k + 1). Runs on the model's device; the result's tensors are on
    the CPU."""
    if isinstance(class_index, (list, tuple)):
        if not class_index:
            raise ValueError("class_index list must not be empty")
        count = len(class_index)
    cfg = model.cfg
    device = next(model.parameters()).device
    if steps < 1:
        raise ValueError("steps must be >= 1")
    if sampler not in ("ddim", "ddpm"):
        raise ValueError(f"unknown sampler {sampler!r}; expected ddim or ddpm")
    if guidance < 0:
        raise ValueError("guidance must be >= 0")
    null = model.null_class
    if guidance > 0 and null is None:
        raise ValueError("guidance > 0 needs a model with a null class")
    if cfg.num_classes == 0:
        if class_index is not None:
            raise ValueError("an unconditional model takes no class")
        cond = None
    else:
        if class_index is None:
            if null is None:
                raise ValueError("this model needs a class (it has no null class)")
            class_index = null
        indices = list(class_index) if isinstance(class_index, (list, tuple)) else [class_index] * count
        for index in indices:
            if not 0 <= index < cfg.num_classes + (1 if null is not None else 0):
                raise ValueError(f"class {index} out of range")
        cond = torch.tensor(indices, dtype=torch.long, device=device)

    gamma = gamma_fn(schedule, cfg.sigmoid_schedule())
    shape = (cfg.frames, cfg.height, cfg.width, cfg.channels)
    size = int(np.prod(shape))
    x = (initial_noise(seed, count, shape) if x_start is None else x_start.clone()).to(device, torch.float32)
    z_prev = model.zero_latents(count, device=device)
    step_x0, gammas = [], []
    x0 = x
    for k in range(steps):
        g = clip_gamma(gamma(1.0 - k / steps))
        g_next = clip_gamma(gamma(1.0 - (k + 1) / steps))
        gammas.append((g, g_next))
        g_in = torch.full((count,), g, dtype=torch.float32, device=device)
        if guidance > 0:
            out2, z2 = model(torch.cat([x, x]), torch.cat([g_in, g_in]),
                             torch.cat([cond, torch.full((count,), null, dtype=torch.long, device=device)]),
                             torch.cat([z_prev, z_prev]))
            out_c, out_u = out2[:count], out2[count:]
            out = (1 + guidance) * out_c - guidance * out_u
            z = z2[:count]
        else:
            out, z = model(x, g_in, cond, z_prev)
        x0 = to_x0(cfg.prediction, out, x, g).clamp(-1, 1)
        eps = eps_from_x0(x0, x, g)
        if sampler == "ddim":
            x = math.sqrt(g_next) * x0 + math.sqrt(1 - g_next) * eps
        else:
            a = min(max(g / g_next, 0.0), 1.0)
            fresh = torch.from_numpy(np.stack([noise(seed, i, k + 1, size).reshape(shape) for i in range(count)])).to(device)
            x = (x - (1 - a) / math.sqrt(1 - g) * eps) / math.sqrt(a) + math.sqrt(1 - a) * fresh
        step_x0.append(x0.cpu())
        z_prev = z if carry else model.zero_latents(count, device=device)
    return SampleResult(final_x0=x0.cpu(), step_x0=torch.stack(step_x0), pixels=to_pixels(x0), z=z.cpu(),
                        gammas=gammas)
