"""Checkpoint directories (checkpoints/README.md, format version 1): config.json <-> RINConfig,
model.safetensors <-> RIN state_dict, with a float32 / float16 / bfloat16 export option."""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1
PREDICTIONS = ("eps", "x0", "v")
SAMPLERS = ("ddim", "ddpm")
SCHEDULES = ("cosine", "sigmoid", "linear")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

DEFAULT_TRAINING = {"schedule": {"kind": "sigmoid", "start": -3, "end": 3, "tau": 0.9},
                    "self_conditioning_rate": 0.9, "label_dropout": 0.1, "steps": 0, "notes": ""}
DEFAULT_SAMPLING = {"steps": 50, "sampler": "ddim", "schedule": "cosine", "guidance": 0.0}


class ConfigError(ValueError):
    """A config.json that breaks the contract; the message names the key."""


def _get(d: dict, path: str) -> Any:
    cur: Any = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise ConfigError(f"config.json: missing required key '{path}'")
        cur = cur[part]
    return cur


def _int(d: dict, path: str) -> int:
    v = _get(d, path)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v):
        raise ConfigError(f"config.json: '{path}' must be an integer, got {v!r}")
    return int(v)


def _hidden(width: int, ratio: float, key: str) -> int:
    h = width * ratio
    if abs(h - round(h)) > 1e-9 or round(h) <= 0:
        raise ConfigError(f"config.json: '{key}' times the width must be a positive integer")
    return int(round(h))


@dataclass
class RINConfig:
    """config.json, flattened. `to_dict` writes the contract's nested layout."""

    height: int
    width: int
    channels: int = 3
    frames: int = 1
    patch_size: int = 2
    patch_frames: int = 1
    interface_dim: int = 256
    interface_heads: int = 8
    interface_mlp_ratio: float = 2
    latent_count: int = 128
    latent_dim: int = 512
    latent_heads: int = 16
    latent_mlp_ratio: float = 4
    blocks: int = 3
    layers_per_block: int = 2
    num_classes: int = 0
    class_names: list[str] | None = None
    null_class: bool = False
    # classes.label_space (checkpoints/README.md): {"name": "imagenet-1k", "ids": [...], "table": "file.tsv"}:
    # class k is id ids[k] of a larger label space; the optional table (in the checkpoint folder)
    # lists the whole space: id, wnid, name, synonyms. None = ids 0..count-1 (format before it).
    label_space: dict | None = None
    prediction: str = "v"
    training: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_TRAINING))
    sampling: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_SAMPLING))

    # Derived sizes (checkpoints/README.md, "Derived").
    @property
    def tokens(self) -> int:
        return (self.frames // self.patch_frames) * (self.height // self.patch_size) * (self.width // self.patch_size)

    @property
    def patch_values(self) -> int:
        return self.patch_frames * self.patch_size * self.patch_size * self.channels

    @property
    def cross_dim(self) -> int:
        return min(self.interface_dim, self.latent_dim)

    @property
    def latent_hidden(self) -> int:
        return _hidden(self.latent_dim, self.latent_mlp_ratio, "latents.mlp_ratio")

    @property
    def interface_hidden(self) -> int:
        return _hidden(self.interface_dim, self.interface_mlp_ratio, "interface.mlp_ratio")

    @property
    def learned_latents(self) -> int:
        return self.latent_count - (2 if self.num_classes > 0 else 1)

    @property
    def is_video(self) -> bool:
        return self.frames > 1

    def sigmoid_schedule(self) -> tuple[float, float, float]:
        """(start, end, tau) for schedule=sigmoid: training.schedule's when it is a sigmoid."""
        s = (self.training or {}).get("schedule") or {}
        if s.get("kind") == "sigmoid":
            return float(s.get("start", -3)), float(s.get("end", 3)), float(s.get("tau", 0.9))
        return -3.0, 3.0, 0.9

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError("config.json: " + msg)

        for name in ("height", "width", "channels", "frames", "patch_size", "patch_frames", "interface_dim",
                     "interface_heads", "latent_count", "latent_dim", "latent_heads", "blocks"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1")
        need(self.layers_per_block >= 0, "layers_per_block must be >= 0")
        need(self.height % self.patch_size == 0 and self.width % self.patch_size == 0,
             "image.height and image.width must be divisible by patch.size")
        need(self.frames % self.patch_frames == 0, "image.frames must be divisible by patch.frames")
        need(self.latent_dim % 8 == 0, "latents.dim must be divisible by 8 (time features use L/8 frequencies)")
        need(self.cross_dim % self.interface_heads == 0, "min(interface.dim, latents.dim) must be divisible by interface.heads")
        need(self.latent_dim % self.latent_heads == 0, "latents.dim must be divisible by latents.heads")
        need(self.num_classes >= 0, "classes.count must be >= 0")
        need(self.learned_latents >= 1, "latents.count too small for the time (and class) tokens")
        need(self.prediction in PREDICTIONS, f"prediction must be one of {PREDICTIONS}")
        need(not (self.null_class and self.num_classes == 0), "classes.null_class needs classes.count > 0")
        if self.class_names is not None:
            need(len(self.class_names) == self.num_classes, "classes.names must have classes.count entries")
        if self.label_space is not None:
            space = self.label_space
            need(isinstance(space, dict) and isinstance(space.get("name"), str) and space["name"] != "",
                 "classes.label_space.name must be a non-empty string")
            ids = space.get("ids")
            need(isinstance(ids, list) and len(ids) == self.num_classes
                 and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids),
                 "classes.label_space.ids must list classes.count non-negative integers")
            need(len(set(ids)) == len(ids), "classes.label_space.ids must be distinct")
            table = space.get("table")
            need(table is None or (isinstance(table, str) and "/" not in table and table not in ("", ".", "..")),
                 "classes.label_space.table must be a file name in the checkpoint folder")
        self.latent_hidden, self.interface_hidden  # noqa: B018 -- raises on a bad ratio

    def to_dict(self) -> dict:
        classes: dict[str, Any] = {"count": self.num_classes, "null_class": self.null_class}
        if self.class_names is not None:
            classes["names"] = list(self.class_names)
        if self.label_space is not None:
            classes["label_space"] = copy.deepcopy(self.label_space)

        def num(v: float) -> int | float:
            return int(v) if float(v).is_integer() else float(v)

        return {
            "format_version": FORMAT_VERSION,
            "architecture": "rin",
            "image": {"frames": self.frames, "height": self.height, "width": self.width, "channels": self.channels},
            "patch": {"size": self.patch_size, "frames": self.patch_frames},
            "interface": {"dim": self.interface_dim, "heads": self.interface_heads,
                          "mlp_ratio": num(self.interface_mlp_ratio)},
            "latents": {"count": self.latent_count, "dim": self.latent_dim, "heads": self.latent_heads,
                        "mlp_ratio": num(self.latent_mlp_ratio)},
            "blocks": self.blocks,
            "layers_per_block": self.layers_per_block,
            "classes": classes,
            "prediction": self.prediction,
            "training": copy.deepcopy(self.training),
            "sampling": copy.deepcopy(self.sampling),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RINConfig":
        if _int(d, "format_version") != FORMAT_VERSION:
            raise ConfigError(f"config.json: format_version {d['format_version']} is not {FORMAT_VERSION}")
        if _get(d, "architecture") != "rin":
            raise ConfigError(f"config.json: architecture {d['architecture']!r} is not 'rin'")
        names = d.get("classes", {}).get("names")
        ratio_i, ratio_l = _get(d, "interface.mlp_ratio"), _get(d, "latents.mlp_ratio")
        for key, r in (("interface.mlp_ratio", ratio_i), ("latents.mlp_ratio", ratio_l)):
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
                raise ConfigError(f"config.json: '{key}' must be a number")
        sampling = copy.deepcopy(DEFAULT_SAMPLING)
        sampling.update(d.get("sampling", {}))
        cfg = cls(
            height=_int(d, "image.height"), width=_int(d, "image.width"), channels=_int(d, "image.channels"),
            frames=_int(d, "image.frames"),
            patch_size=_int(d, "patch.size"), patch_frames=_int(d, "patch.frames"),
            interface_dim=_int(d, "interface.dim"), interface_heads=_int(d, "interface.heads"),
            interface_mlp_ratio=ratio_i,
            latent_count=_int(d, "latents.count"), latent_dim=_int(d, "latents.dim"),
            latent_heads=_int(d, "latents.heads"), latent_mlp_ratio=ratio_l,
            blocks=_int(d, "blocks"), layers_per_block=_int(d, "layers_per_block"),
            num_classes=_int(d, "classes.count"), class_names=list(names) if names is not None else None,
            null_class=bool(d.get("classes", {}).get("null_class", False)),
            label_space=copy.deepcopy(d.get("classes", {}).get("label_space")),
            prediction=_get(d, "prediction"),
            training=copy.deepcopy(d.get("training", DEFAULT_TRAINING)),
            sampling=sampling,
        )
        cfg.validate()
        return cfg

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "RINConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def expected_shapes(cfg: RINConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of model.safetensors with its shape, straight from the contract's table."""
    D, L, P, n, Ci = cfg.interface_dim, cfg.latent_dim, cfg.patch_values, cfg.tokens, cfg.cross_dim
    hl, hi = cfg.latent_hidden, cfg.interface_hidden
    s: dict[str, tuple[int, ...]] = {
        "patch_embed.weight": (D, P), "patch_embed.bias": (D,),
        "patch_norm.weight": (D,), "patch_norm.bias": (D,),
        "pos_embed": (n, D),
        "time_mlp.0.weight": (L, L // 4), "time_mlp.0.bias": (L,),
        "time_mlp.2.weight": (L, L), "time_mlp.2.bias": (L,),
        "latents": (cfg.learned_latents, L),
    }
    if cfg.num_classes > 0:
        s["class_embed.weight"] = (cfg.num_classes + (1 if cfg.null_class else 0), L)

    def norm(prefix: str, w: int) -> None:
        s[prefix + ".weight"], s[prefix + ".bias"] = (w,), (w,)

    def ff(prefix: str, w: int, h: int) -> None:
        s[prefix + ".fc1.weight"], s[prefix + ".fc1.bias"] = (h, w), (h,)
        s[prefix + ".fc2.weight"], s[prefix + ".fc2.bias"] = (w, h), (w,)

    def attn(prefix: str, qdim: int, kvdim: int, inner: int) -> None:
        s[prefix + ".q.weight"], s[prefix + ".q.bias"] = (inner, qdim), (inner,)
        for name in ("k", "v"):
            s[f"{prefix}.{name}.weight"], s[f"{prefix}.{name}.bias"] = (inner, kvdim), (inner,)
        s[prefix + ".out.weight"], s[prefix + ".out.bias"] = (qdim, inner), (qdim,)

    norm("self_cond.norm", L)
    ff("self_cond.ff", L, hl)
    norm("self_cond.out_norm", L)
    for b in range(cfg.blocks):
        r = f"blocks.{b}.read"
        norm(r + ".attn_norm", L); attn(r + ".attn", L, D, Ci); norm(r + ".ff_norm", L); ff(r + ".ff", L, hl)
        for j in range(cfg.layers_per_block):
            c = f"blocks.{b}.compute.{j}"
            norm(c + ".attn_norm", L); attn(c + ".attn", L, L, L); norm(c + ".ff_norm", L); ff(c + ".ff", L, hl)
        w = f"blocks.{b}.write"
        norm(w + ".attn_norm", D); attn(w + ".attn", D, L, Ci); norm(w + ".ff_norm", D); ff(w + ".ff", D, hi)
    norm("readout_norm", D)
    s["readout.weight"], s["readout.bias"] = (P, D), (P,)
    return s


def check_state_dict(cfg: RINConfig, state: dict[str, torch.Tensor]) -> None:
    """Raises ConfigError naming the first missing, unexpected or mis-shaped tensor."""
    want = expected_shapes(cfg)
    for name, shape in want.items():
        if name not in state:
            raise ConfigError(f"model.safetensors: missing tensor '{name}'")
        if tuple(state[name].shape) != shape:
            raise ConfigError(f"model.safetensors: tensor '{name}' has shape {tuple(state[name].shape)}, expected {shape}")
    for name in state:
        if name not in want:
            raise ConfigError(f"model.safetensors: unexpected tensor '{name}'")


def save_checkpoint(model, directory: str | Path, dtype: str = "float32",
                    config: RINConfig | None = None, metadata: dict[str, str] | None = None) -> Path:
    """Writes directory/config.json and directory/model.safetensors (weights cast to `dtype`)."""
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}")
    cfg = config or model.cfg
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", DTYPES[dtype]).contiguous() for k, v in model.state_dict().items()}
    check_state_dict(cfg, state)
    cfg.save(directory / "config.json")
    save_file(state, str(directory / "model.safetensors"), metadata=metadata or {"format": "pt"})
    os.chmod(directory / "model.safetensors", 0o644)  # safetensors creates it 0600; the daemon may run as another user
    return directory


def load_checkpoint(directory: str | Path, device: str = "cpu"):
    """Reads a checkpoint directory into a float32 RIN in eval mode."""
    from safetensors.torch import load_file

    from .model import RIN

    directory = Path(directory)
    cfg = RINConfig.load(directory / "config.json")
    state = {k: v.to(torch.float32) for k, v in load_file(str(directory / "model.safetensors")).items()}
    check_state_dict(cfg, state)
    model = RIN(cfg)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
