"""The RIN network (Jabri, Fleet, Chen, ICML 2023), as fixed by ../../checkpoints/README.md.

Shape legend:
    B batch, F frames, H height, W width, C channels (channels last, F = 1 for images)
    n interface tokens = (F/pt)(H/p)(W/p), P = pt*p*p*C values per patch
    D interface width, m latents (time and class tokens included), L latent width
    Ci = min(D, L), the inner width of the read and write cross-attention

Inputs are always 5-D channels-last arrays (B, F, H, W, C); an image model takes F = 1. A 4-D
(B, H, W, C) array is accepted for image models and the prediction is then returned 4-D as well.

Module attribute names are the checkpoint's tensor names (checkpoints/README.md, "model.safetensors"):
`model.state_dict()` has exactly the contract's keys, nothing more, nothing less.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import RINConfig

LAYER_NORM_EPS = 1e-6
GAMMA_CLIP = 1e-9


class FeedForward(nn.Module):
    """FF(x) = fc2(GELU_erf(fc1(x))); optional dropout after the GELU and after fc2 (training only)."""

    def __init__(self, width: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)  # (r w, w)
        self.fc2 = nn.Linear(hidden, width)  # (w, r w)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.fc1(x), approximate="none")
        if self.dropout > 0:
            h = F.dropout(h, self.dropout, self.training)
        y = self.fc2(h)
        if self.dropout > 0:
            y = F.dropout(y, self.dropout, self.training)
        return y


class Attention(nn.Module):
    """Multi-head attention with biased q, k, v, out projections; heads are contiguous slices of the
    inner width; softmax scale 1/sqrt(head width). Keys/values come from `context` as given (the
    caller decides about LayerNorm)."""

    def __init__(self, query_dim: int, context_dim: int, inner_dim: int, heads: int):
        super().__init__()
        if inner_dim % heads != 0:
            raise ValueError(f"attention inner width {inner_dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(query_dim, inner_dim)  # (Ci, query_dim)
        self.k = nn.Linear(context_dim, inner_dim)  # (Ci, context_dim)
        self.v = nn.Linear(context_dim, inner_dim)  # (Ci, context_dim)
        self.out = nn.Linear(inner_dim, query_dim)  # (query_dim, Ci)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, queries, _ = x.shape
        keys = context.shape[1]
        q = self.q(x).view(batch, queries, self.heads, -1).transpose(1, 2)  # (B, h, Nq, dh)
        k = self.k(context).view(batch, keys, self.heads, -1).transpose(1, 2)  # (B, h, Nk, dh)
        v = self.v(context).view(batch, keys, self.heads, -1).transpose(1, 2)  # (B, h, Nk, dh)
        # scaled_dot_product_attention's default scale is 1/sqrt(dh), the contract's.
        o = F.scaled_dot_product_attention(q, k, v)  # (B, h, Nq, dh)
        o = o.transpose(1, 2).reshape(batch, queries, -1)
        return self.out(o)


class ReadBlock(nn.Module):
    """Latents read the interface: Z += MHA(LN(Z), X); Z += FF(LN(Z))."""

    def __init__(self, cfg: RINConfig, dropout: float):
        super().__init__()
        L, D, Ci = cfg.latent_dim, cfg.interface_dim, cfg.cross_dim
        self.attn_norm = nn.LayerNorm(L, eps=LAYER_NORM_EPS)
        self.attn = Attention(L, D, Ci, cfg.interface_heads)
        self.ff_norm = nn.LayerNorm(L, eps=LAYER_NORM_EPS)
        self.ff = FeedForward(L, cfg.latent_hidden, dropout)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = z + self.attn(self.attn_norm(z), x)
        return z + self.ff(self.ff_norm(z))


class ComputeLayer(nn.Module):
    """Latent self-attention layer: Z += MHA(LN(Z), LN(Z)); Z += FF(LN(Z))."""

    def __init__(self, cfg: RINConfig, dropout: float):
        super().__init__()
        L = cfg.latent_dim
        self.attn_norm = nn.LayerNorm(L, eps=LAYER_NORM_EPS)
        self.attn = Attention(L, L, L, cfg.latent_heads)
        self.ff_norm = nn.LayerNorm(L, eps=LAYER_NORM_EPS)
        self.ff = FeedForward(L, cfg.latent_hidden, dropout)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(z)
        z = z + self.attn(h, h)
        return z + self.ff(self.ff_norm(z))


class WriteBlock(nn.Module):
    """Interface reads the latents back: X += MHA(LN(X), Z); X += FF(LN(X))."""

    def __init__(self, cfg: RINConfig):
        super().__init__()
        L, D, Ci = cfg.latent_dim, cfg.interface_dim, cfg.cross_dim
        self.attn_norm = nn.LayerNorm(D, eps=LAYER_NORM_EPS)
        self.attn = Attention(D, L, Ci, cfg.interface_heads)
        self.ff_norm = nn.LayerNorm(D, eps=LAYER_NORM_EPS)
        self.ff = FeedForward(D, cfg.interface_hidden)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), z)
        return x + self.ff(self.ff_norm(x))


class Block(nn.Module):
    """One RIN block: read, K compute layers, write."""

    def __init__(self, cfg: RINConfig, dropout: float):
        super().__init__()
        self.read = ReadBlock(cfg, dropout)
        self.compute = nn.ModuleList(ComputeLayer(cfg, dropout) for _ in range(cfg.layers_per_block))
        self.write = WriteBlock(cfg)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.read(z, x)
        for layer in self.compute:
            z = layer(z)
        x = self.write(x, z)
        return x, z


class SelfConditioning(nn.Module):
    """Latent self-conditioning (RIN section 3.2): Z + LN0(Z_prev + FF(LN(Z_prev))).
    LN0 (`out_norm`) starts with zero gain and bias so a fresh model ignores Z_prev."""

    def __init__(self, cfg: RINConfig):
        super().__init__()
        L = cfg.latent_dim
        self.norm = nn.LayerNorm(L, eps=LAYER_NORM_EPS)
        self.ff = FeedForward(L, cfg.latent_hidden)
        self.out_norm = nn.LayerNorm(L, eps=LAYER_NORM_EPS)

    def forward(self, z: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
        return z + self.out_norm(z_prev + self.ff(self.norm(z_prev)))


def time_features(gamma: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """Standardised sinusoidal features of gamma * 1e4, (B,) -> (B, L/4) float32, as the contract fixes
    them: h = L/8, f_i = exp(-ln(10000) i / h), e = [sin(s f), cos(s f)], e = (e - mean) / sqrt(var + 1e-6).

    Computed in float64 from gamma rounded to float32, then rounded to float32: the angles reach
    ~1e4 rad, where a float32 ulp (~1e-3) would make the features implementation-dependent."""
    half = latent_dim // 8
    g = gamma.to(torch.float32).clamp(GAMMA_CLIP, 1 - GAMMA_CLIP).to(torch.float64)
    s = g * 1e4  # (B)
    i = torch.arange(half, dtype=torch.float64, device=gamma.device)
    freqs = torch.exp(-math.log(10000.0) * i / half)  # (h)
    angles = s[:, None] * freqs[None, :]  # (B, h)
    e = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (B, L/4)
    mean = e.mean(dim=-1, keepdim=True)
    var = e.var(dim=-1, unbiased=False, keepdim=True)
    return ((e - mean) / torch.sqrt(var + 1e-6)).to(torch.float32)


def patchify(x: torch.Tensor, patch_frames: int, patch_size: int) -> torch.Tensor:
    """(B, F, H, W, C) -> (B, n, P): patches row-major over (frame-patch, row-patch, col-patch), each
    flattened in (pt, row, col, channel) order."""
    B, Fr, H, W, C = x.shape
    pt, p = patch_frames, patch_size
    x = x.reshape(B, Fr // pt, pt, H // p, p, W // p, p, C)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7)  # (B, F/pt, H/p, W/p, pt, p, p, C)
    return x.reshape(B, (Fr // pt) * (H // p) * (W // p), pt * p * p * C)


def unpatchify(tokens: torch.Tensor, frames: int, height: int, width: int, channels: int,
               patch_frames: int, patch_size: int) -> torch.Tensor:
    """(B, n, P) -> (B, F, H, W, C); the inverse of `patchify`."""
    B = tokens.shape[0]
    pt, p = patch_frames, patch_size
    x = tokens.reshape(B, frames // pt, height // p, width // p, pt, p, p, channels)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7)  # (B, F/pt, pt, H/p, p, W/p, p, C)
    return x.reshape(B, frames, height, width, channels)


class RIN(nn.Module):
    """f(x_t, gamma, class, Z_prev) -> (prediction, Z).

    latent_dropout: dropout rate on the latent-side FFs (read and compute blocks) during training;
    it has no parameters, so it never changes the checkpoint.
    """

    def __init__(self, cfg: RINConfig, latent_dropout: float = 0.0):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        D, L, P, n = cfg.interface_dim, cfg.latent_dim, cfg.patch_values, cfg.tokens
        self.patch_embed = nn.Linear(P, D)  # (D, P)
        self.patch_norm = nn.LayerNorm(D, eps=LAYER_NORM_EPS)
        self.pos_embed = nn.Parameter(torch.zeros(n, D))  # (n, D)
        self.time_mlp = nn.Sequential(nn.Linear(L // 4, L), nn.SiLU(), nn.Linear(L, L))
        if cfg.num_classes > 0:
            rows = cfg.num_classes + (1 if cfg.null_class else 0)
            self.class_embed = nn.Embedding(rows, L)  # (count [+1], L)
        else:
            self.class_embed = None
        self.latents = nn.Parameter(torch.zeros(cfg.learned_latents, L))  # (m-2 or m-1, L)
        self.self_cond = SelfConditioning(cfg)
        self.blocks = nn.ModuleList(Block(cfg, latent_dropout) for _ in range(cfg.blocks))
        self.readout_norm = nn.LayerNorm(D, eps=LAYER_NORM_EPS)
        self.readout = nn.Linear(D, P)  # (P, D)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Training initialisation: truncated-normal(0.02) weights and embeddings, zero biases,
        unit LayerNorms, and the zero LN0 the paper asks for."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.latents, std=0.02)
        nn.init.zeros_(self.self_cond.out_norm.weight)
        nn.init.zeros_(self.self_cond.out_norm.bias)

    @property
    def null_class(self) -> int | None:
        """Index of the null row used by the unconditional pass of guidance, or None."""
        return self.cfg.num_classes if (self.cfg.num_classes > 0 and self.cfg.null_class) else None

    def zero_latents(self, batch: int, device=None, dtype=torch.float32) -> torch.Tensor:
        """Z_prev for the first step: zeros, (B, m, L)."""
        return torch.zeros(batch, self.cfg.latent_count, self.cfg.latent_dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, class_idx: torch.Tensor | None = None,
                z_prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, F, H, W, C) or (B, H, W, C) for images; gamma: (B,) or scalar, signal power in
        [0, 1] (clipped to [1e-9, 1-1e-9] here); class_idx: (B,) int64, required iff the model has
        classes (pass `null_class` for the unconditional pass); z_prev: (B, m, L) or None (zeros).
        Returns (prediction shaped like x, Z (B, m, L))."""
        cfg = self.cfg
        squeeze = x.dim() == 4
        if squeeze:
            if cfg.frames != 1:
                raise ValueError("a video model needs (B, F, H, W, C) input")
            x = x.unsqueeze(1)
        expected = (cfg.frames, cfg.height, cfg.width, cfg.channels)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"input shape {tuple(x.shape[1:])} != config's {expected}")
        B = x.shape[0]
        gamma = torch.as_tensor(gamma, dtype=torch.float32, device=x.device)
        if gamma.dim() == 0:
            gamma = gamma.expand(B)

        tokens = patchify(x, cfg.patch_frames, cfg.patch_size)  # (B, n, P)
        xi = self.patch_norm(self.patch_embed(tokens)) + self.pos_embed  # (B, n, D)

        time = self.time_mlp(time_features(gamma, cfg.latent_dim).to(xi.dtype))  # (B, L)
        parts = [self.latents.unsqueeze(0).expand(B, -1, -1), time[:, None, :]]
        if self.class_embed is not None:
            if class_idx is None:
                raise ValueError("a class-conditional model needs class_idx")
            class_idx = torch.as_tensor(class_idx, dtype=torch.long, device=x.device)
            if class_idx.dim() == 0:
                class_idx = class_idx.expand(B)
            parts.append(self.class_embed(class_idx)[:, None, :])
        elif class_idx is not None:
            raise ValueError("an unconditional model takes no class_idx")
        z = torch.cat(parts, dim=1)  # (B, m, L)
        if z_prev is None:
            z_prev = torch.zeros_like(z)
        z = self.self_cond(z, z_prev.to(z.dtype))

        for block in self.blocks:
            xi, z = block(xi, z)

        out = self.readout(self.readout_norm(xi))  # (B, n, P)
        pred = unpatchify(out, cfg.frames, cfg.height, cfg.width, cfg.channels,
                          cfg.patch_frames, cfg.patch_size)
        if squeeze:
            pred = pred.squeeze(1)
        return pred, z
