"""Checks of the PyTorch reference (Training/rin) against the contract, checkpoints/README.md.

    /work/venv/bin/python -m pytest Training/tests -q
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import rin
from random_checkpoint import random_model
from rin.checkpoint import ConfigError, check_state_dict, expected_shapes
from rin.diffusion import (clip_gamma, eps_from_x0, gamma_fn, gamma_tensor, sample, to_pixels, to_x0)
from rin.model import patchify, time_features, unpatchify
from rin.noise import noise

TRAINING = Path(__file__).resolve().parents[1]
CONFIGS = TRAINING / "configs"
FIXTURES = TRAINING.parent / "Tests" / "Fixtures" / "parity"
TINY = ["tiny-image-v", "tiny-image-eps", "tiny-gray-x0", "tiny-video"]


def load_cfg(name: str) -> rin.RINConfig:
    return rin.RINConfig.load(CONFIGS / f"{name}.json")


def random_input(cfg: rin.RINConfig, batch: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, cfg.frames, cfg.height, cfg.width, cfg.channels), generator=gen)
    z = torch.randn((batch, cfg.latent_count, cfg.latent_dim), generator=gen)
    classes = torch.arange(batch) % cfg.num_classes if cfg.num_classes else None
    return x, z, classes


# ------------------------------------------------------------------------------------------- noise

def _scalar_noise(seed: int, i: int, step: int, count: int) -> list[float]:
    """The recipe transcribed with Python integers, independently of the numpy version."""
    mask, golden = (1 << 64) - 1, 0x9E3779B97F4A7C15

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    key = mix(mix(mix((seed + golden) & mask) ^ i) ^ step)
    out = []
    for q in range((count + 1) // 2):
        r1 = mix((key + (2 * q + 1) * golden) & mask)
        r2 = mix((key + (2 * q + 2) * golden) & mask)
        u1 = ((r1 >> 11) + 1) * 2.0 ** -53
        u2 = (r2 >> 11) * 2.0 ** -53
        rad = math.sqrt(-2 * math.log(u1))
        out += [float(np.float32(rad * math.cos(2 * math.pi * u2))), float(np.float32(rad * math.sin(2 * math.pi * u2)))]
    return out[:count]


@pytest.mark.parametrize("seed,i,step,count", [(0, 0, 0, 9), (2 ** 64 - 1, 3, 5, 6), (2 ** 63 + 12345, 15, 1000, 7)])
def test_noise_matches_scalar_transcription(seed, i, step, count):
    assert noise(seed, i, step, count).tolist() == _scalar_noise(seed, i, step, count)


def test_noise_is_deterministic_and_standard_normal():
    a = noise(123, 0, 0, 200_001)
    assert a.dtype == np.float32 and a.shape == (200_001,)
    assert np.array_equal(a, noise(123, 0, 0, 200_001))
    assert abs(float(a.mean())) < 0.01 and abs(float(a.std()) - 1) < 0.01
    assert abs(float((a ** 3).mean())) < 0.03 and abs(float((a ** 4).mean()) - 3) < 0.06
    assert np.array_equal(noise(123, 0, 0, 5), a[:5])  # a prefix: the odd tail value is dropped


def test_noise_streams_differ_by_seed_image_and_step():
    base = noise(5, 0, 0, 16)
    for other in (noise(6, 0, 0, 16), noise(5, 1, 0, 16), noise(5, 0, 1, 16)):
        assert not np.array_equal(base, other)


def test_noise_fixture_matches_code():
    cases = json.loads((FIXTURES / "noise.json").read_text())["cases"]
    assert any(c["seed"] > 2 ** 63 for c in cases)
    for c in cases:
        values = noise(int(c["seed_string"]), c["i"], c["step"], c["count"])
        assert [f"{b:08x}" for b in values.view(np.uint32)] == c["bits_hex"]


# ----------------------------------------------------------------------------------- model pieces

@pytest.mark.parametrize("name", TINY + ["cifar10-official", "imagenet64-official"])
def test_state_dict_is_exactly_the_contract(name):
    cfg = load_cfg(name)
    with torch.device("meta"):
        model = rin.RIN(cfg)
    state = model.state_dict()
    shapes = expected_shapes(cfg)
    assert set(state) == set(shapes)
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key


def test_official_parameter_counts_match_rin_md():
    counts = {}
    for name in ("cifar10-official", "imagenet64-official"):
        counts[name] = sum(math.prod(s) for s in expected_shapes(load_cfg(name)).values())
    assert 30e6 < counts["cifar10-official"] < 32e6
    assert 155e6 < counts["imagenet64-official"] < 160e6


@pytest.mark.parametrize("name", TINY)
def test_patchify_unpatchify_are_inverse(name):
    cfg = load_cfg(name)
    x, _, _ = random_input(cfg, 2)
    tokens = patchify(x, cfg.patch_frames, cfg.patch_size)
    assert tokens.shape == (2, cfg.tokens, cfg.patch_values)
    back = unpatchify(tokens, cfg.frames, cfg.height, cfg.width, cfg.channels, cfg.patch_frames, cfg.patch_size)
    assert torch.equal(back, x)


def test_patch_order_is_row_major_and_flattened_pt_row_col_channel():
    x = torch.arange(1 * 4 * 4 * 6 * 2, dtype=torch.float32).reshape(1, 4, 4, 6, 2)  # F 4, H 4, W 6, C 2
    tokens = patchify(x, 2, 2)  # n = 2 * 2 * 3
    assert torch.equal(tokens[0, 0], x[0, 0:2, 0:2, 0:2, :].reshape(-1))
    assert torch.equal(tokens[0, 1], x[0, 0:2, 0:2, 2:4, :].reshape(-1))  # next column patch
    assert torch.equal(tokens[0, 3], x[0, 0:2, 2:4, 0:2, :].reshape(-1))  # next row patch
    assert torch.equal(tokens[0, 6], x[0, 2:4, 0:2, 0:2, :].reshape(-1))  # next frame patch


def test_time_features_follow_the_contract():
    L = 32
    g = torch.tensor([0.0, 0.37, 1.0])
    feats = time_features(g, L)
    assert feats.shape == (3, L // 4)
    h = L // 8
    for row, gv in zip(feats, (1e-9, 0.37, 1 - 1e-9)):
        s = float(np.float32(gv)) * 1e4  # float64 angles, as the contract says
        f = np.exp(-np.log(10000.0) * np.arange(h) / h)
        e = np.concatenate([np.sin(s * f), np.cos(s * f)])
        e = (e - e.mean()) / np.sqrt(e.var() + 1e-6)
        np.testing.assert_allclose(row.numpy(), e, atol=1e-6)
    np.testing.assert_allclose(feats.mean(-1).numpy(), 0, atol=1e-5)


def _reference_forward(state, cfg, x, gamma, classes, z_prev):
    """The contract's forward pass written from scratch in float64 numpy from the tensor table."""
    W = {k: v.double().numpy() for k, v in state.items()}

    def ln(v, p):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * W[p + ".weight"] + W[p + ".bias"]

    def lin(v, p):
        return v @ W[p + ".weight"].T + W[p + ".bias"]

    verf = np.vectorize(math.erf)

    def ffn(v, p):
        h = lin(v, p + ".fc1")
        return lin(0.5 * h * (1 + verf(h / math.sqrt(2))), p + ".fc2")

    def mha(q_in, kv, p, heads):
        q, k, v = lin(q_in, p + ".q"), lin(kv, p + ".k"), lin(kv, p + ".v")
        dh = q.shape[-1] // heads
        out = np.zeros_like(q)
        for hh in range(heads):
            sl = slice(hh * dh, (hh + 1) * dh)
            logits = q[:, sl] @ k[:, sl].T / math.sqrt(dh)
            logits -= logits.max(-1, keepdims=True)
            w = np.exp(logits)
            w /= w.sum(-1, keepdims=True)
            out[:, sl] = w @ v[:, sl]
        return lin(out, p + ".out")

    preds, zs = [], []
    for b in range(x.shape[0]):
        xb = x[b].double().numpy()
        F_, H, Wd, C = xb.shape
        pt, p = cfg.patch_frames, cfg.patch_size
        patches = []
        for fi in range(F_ // pt):
            for r in range(H // p):
                for c in range(Wd // p):
                    patches.append(xb[fi * pt:(fi + 1) * pt, r * p:(r + 1) * p, c * p:(c + 1) * p, :].reshape(-1))
        X = ln(lin(np.stack(patches), "patch_embed"), "patch_norm") + W["pos_embed"]
        g = min(max(float(gamma[b]), 1e-9), 1 - 1e-9)
        h = cfg.latent_dim // 8
        f = np.exp(-math.log(10000) * np.arange(h) / h)
        e = np.concatenate([np.sin(float(np.float32(g)) * 1e4 * f), np.cos(float(np.float32(g)) * 1e4 * f)])
        e = (e - e.mean()) / np.sqrt(e.var() + 1e-6)
        t1 = lin(e, "time_mlp.0")
        time_tok = lin(t1 / (1 + np.exp(-t1)), "time_mlp.2")
        rows = [W["latents"], time_tok[None]]
        if cfg.num_classes:
            rows.append(W["class_embed.weight"][int(classes[b])][None])
        Z = np.concatenate(rows)
        zp = z_prev[b].double().numpy()
        Z = Z + ln(zp + ffn(ln(zp, "self_cond.norm"), "self_cond.ff"), "self_cond.out_norm")
        for bi in range(cfg.blocks):
            pre = f"blocks.{bi}"
            Z = Z + mha(ln(Z, pre + ".read.attn_norm"), X, pre + ".read.attn", cfg.interface_heads)
            Z = Z + ffn(ln(Z, pre + ".read.ff_norm"), pre + ".read.ff")
            for j in range(cfg.layers_per_block):
                c = f"{pre}.compute.{j}"
                hz = ln(Z, c + ".attn_norm")
                Z = Z + mha(hz, hz, c + ".attn", cfg.latent_heads)
                Z = Z + ffn(ln(Z, c + ".ff_norm"), c + ".ff")
            X = X + mha(ln(X, pre + ".write.attn_norm"), Z, pre + ".write.attn", cfg.interface_heads)
            X = X + ffn(ln(X, pre + ".write.ff_norm"), pre + ".write.ff")
        out = lin(ln(X, "readout_norm"), "readout")
        img = np.zeros_like(xb)
        k = 0
        for fi in range(F_ // pt):
            for r in range(H // p):
                for c in range(Wd // p):
                    img[fi * pt:(fi + 1) * pt, r * p:(r + 1) * p, c * p:(c + 1) * p, :] = out[k].reshape(pt, p, p, C)
                    k += 1
        preds.append(img)
        zs.append(Z)
    return np.stack(preds), np.stack(zs)


@pytest.mark.parametrize("name", TINY)
def test_model_matches_an_independent_transcription_of_the_contract(name):
    cfg = load_cfg(name)
    model = random_model(cfg, 4)
    x, z_prev, classes = random_input(cfg, 2, seed=9)
    gamma = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        pred, z = model(x, gamma, classes, z_prev)
    ref_pred, ref_z = _reference_forward(model.state_dict(), cfg, x, gamma, classes, z_prev)
    np.testing.assert_allclose(pred.numpy(), ref_pred, atol=5e-5)
    np.testing.assert_allclose(z.numpy(), ref_z, atol=5e-5)


def test_fresh_model_ignores_z_prev_and_random_one_does_not():
    cfg = load_cfg("tiny-image-v")
    torch.manual_seed(0)
    fresh = rin.RIN(cfg).eval()
    x, z_prev, classes = random_input(cfg, 2)
    with torch.no_grad():
        a, za = fresh(x, 0.5, classes, z_prev)
        b, zb = fresh(x, 0.5, classes, None)
        assert torch.equal(a, b) and torch.equal(za, zb)
        rnd = random_model(cfg, 1)
        c, _ = rnd(x, 0.5, classes, z_prev)
        d, _ = rnd(x, 0.5, classes, None)
        assert (c - d).abs().max() > 1e-3


def test_image_model_accepts_4d_input_and_rejects_wrong_shapes():
    cfg = load_cfg("tiny-image-v")
    model = random_model(cfg, 2)
    x, _, classes = random_input(cfg, 2)
    with torch.no_grad():
        p5, _ = model(x, 0.4, classes)
        p4, _ = model(x[:, 0], 0.4, classes)
    assert p4.shape == (2, cfg.height, cfg.width, cfg.channels)
    assert torch.allclose(p4, p5[:, 0])
    with pytest.raises(ValueError):
        model(torch.zeros(1, 1, cfg.height + 2, cfg.width, cfg.channels), 0.4, classes[:1])
    with pytest.raises(ValueError):
        model(x, 0.4, None)  # class-conditional needs classes
    uncond = random_model(load_cfg("tiny-image-eps"), 2)
    with pytest.raises(ValueError):
        uncond(torch.zeros(1, 1, 6, 10, 3), 0.4, torch.tensor([0]))


def test_latent_dropout_only_acts_in_training():
    cfg = load_cfg("tiny-image-v")
    torch.manual_seed(0)
    model = rin.RIN(cfg, latent_dropout=0.5)
    x, _, classes = random_input(cfg, 2)
    model.train()
    a, _ = model(x, 0.5, classes)
    b, _ = model(x, 0.5, classes)
    assert not torch.equal(a, b)
    model.eval()
    with torch.no_grad():
        c, _ = model(x, 0.5, classes)
        d, _ = model(x, 0.5, classes)
    assert torch.equal(c, d)


# ------------------------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("dtype,tol", [("float32", 0.0), ("float16", 1e-2), ("bfloat16", 5e-2)])
def test_save_load_round_trip(tmp_path, dtype, tol):
    cfg = load_cfg("tiny-video")
    model = random_model(cfg, 3)
    rin.save_checkpoint(model, tmp_path / "ck", dtype=dtype)
    loaded = rin.load_checkpoint(tmp_path / "ck")
    assert loaded.cfg == cfg
    raw = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert {v.dtype for v in raw.values()} == {rin.checkpoint.DTYPES[dtype]}
    for k, v in model.state_dict().items():
        diff = (loaded.state_dict()[k] - v).abs().max().item()
        assert diff <= tol * max(1.0, v.abs().max().item()), k


def test_config_round_trips_and_errors_name_the_key(tmp_path):
    for name in TINY + ["cifar10-official", "imagenet64-official"]:
        d = json.loads((CONFIGS / f"{name}.json").read_text())
        assert rin.RINConfig.from_dict(d).to_dict() == d
    d = json.loads((CONFIGS / "tiny-image-v.json").read_text())
    del d["latents"]["heads"]
    with pytest.raises(ConfigError, match="latents.heads"):
        rin.RINConfig.from_dict(d)
    for key, value, match in (("format_version", 2, "format_version"), ("architecture", "dit", "architecture"),
                              ("prediction", "score", "prediction")):
        d = json.loads((CONFIGS / "tiny-image-v.json").read_text())
        d[key] = value
        with pytest.raises(ConfigError, match=match):
            rin.RINConfig.from_dict(d)
    d = json.loads((CONFIGS / "tiny-image-v.json").read_text())
    d["image"]["width"] = 13
    with pytest.raises(ConfigError, match="divisible"):
        rin.RINConfig.from_dict(d)


def test_check_state_dict_names_the_bad_tensor():
    cfg = load_cfg("tiny-image-eps")
    state = random_model(cfg, 0).state_dict()
    missing = dict(state)
    del missing["readout.bias"]
    with pytest.raises(ConfigError, match="missing tensor 'readout.bias'"):
        check_state_dict(cfg, missing)
    extra = dict(state, **{"class_embed.weight": torch.zeros(1, cfg.latent_dim)})
    with pytest.raises(ConfigError, match="unexpected tensor 'class_embed.weight'"):
        check_state_dict(cfg, extra)
    bad = dict(state, pos_embed=torch.zeros(3, 3))
    with pytest.raises(ConfigError, match="'pos_embed' has shape"):
        check_state_dict(cfg, bad)


# -------------------------------------------------------------------------------------- diffusion

def test_schedules():
    for kind in ("cosine", "sigmoid", "linear"):
        fn = gamma_fn(kind)
        assert abs(fn(0.0) - 1) < 1e-9 and abs(fn(1.0)) < 1e-9
        ts = np.linspace(0, 1, 11)
        vals = [fn(t) for t in ts]
        assert all(a > b for a, b in zip(vals, vals[1:]))
        np.testing.assert_allclose(gamma_tensor(kind, torch.tensor(ts)).numpy(),
                                   [clip_gamma(v) for v in vals], atol=1e-7)
    assert clip_gamma(0.0) == 1e-9 and clip_gamma(1.0) == 1 - 1e-9
    with pytest.raises(ValueError):
        gamma_fn("quadratic")


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_prediction_conversions_invert_the_targets(prediction):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand((4, 5), generator=gen) * 2 - 1
    eps = torch.randn((4, 5), generator=gen, dtype=torch.float64).float()
    g = 0.37
    x = math.sqrt(g) * x0 + math.sqrt(1 - g) * eps
    out = rin.diffusion.target(prediction, x0, eps, torch.tensor(g))
    torch.testing.assert_close(to_x0(prediction, out, x, g), x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(eps_from_x0(x0, x, g), eps, atol=1e-5, rtol=0)


def test_pixels_round_half_away_from_zero_and_clamp():
    x0 = torch.tensor([-1.5, -1.0, 0.0, 1 / 255, 1.0, 2.0])
    assert to_pixels(x0).tolist() == [0, 0, 128, 128, 255, 255]


def test_guidance_zero_is_the_plain_conditional_pass_and_w_mixes_outputs():
    cfg = load_cfg("tiny-image-v")
    model = random_model(cfg, 5)
    run0 = sample(model, class_index=2, seed=3, steps=1, sampler="ddim", guidance=0.0, count=2)
    x = rin.diffusion.initial_noise(3, 2, (1, 8, 12, 3))
    g = clip_gamma(gamma_fn("cosine")(1.0))
    with torch.no_grad():
        out_c, _ = model(x, torch.full((2,), g), torch.tensor([2, 2]), None)
        out_u, _ = model(x, torch.full((2,), g), torch.tensor([3, 3]), None)
    torch.testing.assert_close(run0.final_x0, to_x0("v", out_c, x, g).clamp(-1, 1), atol=1e-6, rtol=0)
    run2 = sample(model, class_index=2, seed=3, steps=1, sampler="ddim", guidance=2.0, count=2)
    torch.testing.assert_close(run2.final_x0, to_x0("v", 3 * out_c - 2 * out_u, x, g).clamp(-1, 1), atol=1e-5, rtol=0)


def test_sampler_carry_matters_and_runs_are_deterministic():
    cfg = load_cfg("tiny-video")
    model = random_model(cfg, 6)
    kw = dict(class_index=1, seed=2 ** 64 - 3, steps=4, sampler="ddpm", guidance=1.0, count=2)
    a, b = sample(model, **kw), sample(model, **kw)
    assert torch.equal(a.final_x0, b.final_x0)
    assert a.step_x0.shape == (4, 2, 4, 8, 6, 3) and a.pixels.dtype == np.uint8
    c = sample(model, **kw, carry=False)
    assert torch.equal(a.step_x0[0], c.step_x0[0])  # step 0 has Z_prev = 0 either way
    assert (a.final_x0 - c.final_x0).abs().max() > 1e-3


def test_sampler_rejects_bad_requests():
    model = random_model(load_cfg("tiny-gray-x0"), 0)  # classes, no null row
    for kw in (dict(class_index=None), dict(class_index=0, guidance=1.0), dict(class_index=2),
               dict(class_index=0, steps=0), dict(class_index=0, sampler="euler"),
               dict(class_index=0, guidance=-1.0)):
        args = dict(seed=0, steps=2) | kw
        with pytest.raises(ValueError):
            sample(model, **args)
    with pytest.raises(ValueError):
        sample(random_model(load_cfg("tiny-image-eps"), 0), class_index=0, seed=0, steps=2)


# ------------------------------------------------------------------------------- fixtures and CLI

def _run_tolerance(key: str) -> float:
    """DDPM runs amplify float32 rounding ~1e4 times at step 0 (Tests/Fixtures/README.md)."""
    return 2e-2 if "ddpm" in key.split(".")[0] else 1e-4


def test_recorded_fixtures_are_current(tmp_path):
    """Rerunning record_fixtures.py reproduces the committed files: weights, configs, JSON and noise
    byte for byte; network outputs within float32 noise (bytes are identical on the pinned torch and
    this machine, but other torch builds or CPUs round differently), so a stale fixture still fails."""
    subprocess.run([sys.executable, str(TRAINING / "record_fixtures.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    committed = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*") if p.is_file())
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert committed == fresh
    for rel in committed:
        old, new = FIXTURES / rel, tmp_path / rel
        if rel.name in ("forward.safetensors", "trajectories.safetensors"):
            a, b = load_file(str(old)), load_file(str(new))
            assert sorted(a) == sorted(b), str(rel)
            for key in a:
                if key.endswith(".pixels"):
                    assert (a[key] - b[key]).abs().max() <= 1, f"{rel}: {key}"
                else:
                    tol = 1e-5 if rel.name == "forward.safetensors" else _run_tolerance(key)
                    torch.testing.assert_close(a[key], b[key], atol=tol, rtol=0, msg=f"{rel}: {key}")
        else:
            assert old.read_bytes() == new.read_bytes(), str(rel)
    total = sum((FIXTURES / rel).stat().st_size for rel in committed)
    assert total < 3_000_000


def test_fixture_trajectories_are_consistent():
    from record_fixtures import FIXTURES as RECORDED

    assert sorted(RECORDED) == sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name != "dtypes")
    for d in (FIXTURES / name for name in sorted(RECORDED)):
        meta = json.loads((d / "trajectories.json").read_text())
        t = load_file(str(d / "trajectories.safetensors"))
        for run in meta["runs"]:
            n = run["name"]
            assert torch.equal(t[f"{n}.final_x0"], t[f"{n}.step_x0"][-1])
            assert t[f"{n}.step_x0"].shape[0] == run["steps"]
            assert torch.equal(t[f"{n}.pixels"], torch.from_numpy(to_pixels(t[f"{n}.final_x0"]).astype(np.float32)))


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_random_checkpoint_and_sample_cli(tmp_path):
    ck = tmp_path / "tiny"
    r = _cli(TRAINING / "random_checkpoint.py", "--config", CONFIGS / "tiny-video.json", "-o", ck, "--seed", "2",
             "--dtype", "bfloat16")
    assert r.returncode == 0, r.stderr
    cfg = rin.RINConfig.load(ck / "config.json")
    model = rin.load_checkpoint(ck)
    assert model.state_dict()["self_cond.out_norm.weight"].abs().sum() > 1.0

    r = _cli(TRAINING / "sample.py", "--checkpoint", ck, "--class", "2", "--seed", "5", "--steps", "3",
             "-o", tmp_path / "one.png")
    assert r.returncode == 0, r.stderr
    img = Image.open(tmp_path / "one.png")
    assert img.size == (cfg.frames * cfg.width, cfg.height) and img.mode == "RGB"
    res = sample(model, class_index=2, seed=5, steps=3, sampler=cfg.sampling["sampler"],
                 schedule=cfg.sampling["schedule"], guidance=cfg.sampling["guidance"])
    expected = np.concatenate(list(res.pixels[0]), axis=1)
    assert np.array_equal(np.asarray(img), expected)

    r = _cli(TRAINING / "sample.py", "--checkpoint", ck, "--count", "3", "--steps", "2", "--no-carry",
             "--sampler", "ddpm", "-o", tmp_path / "many.png")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.glob("many-*.png")) == ["many-0.png", "many-1.png", "many-2.png"]
    r = _cli(TRAINING / "sample.py", "--checkpoint", ck, "--count", "3", "--steps", "2", "--grid",
             "-o", tmp_path / "grid.png")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "grid.png").size == (2 * cfg.frames * cfg.width, 2 * cfg.height)

    r = _cli(TRAINING / "sample.py", "--checkpoint", ck, "--class", "9", "-o", tmp_path / "x.png")
    assert r.returncode == 1 and "class 9 is out of range" in r.stderr
    r = _cli(TRAINING / "sample.py", "--checkpoint", tmp_path / "nowhere", "-o", tmp_path / "x.png")
    assert r.returncode == 1 and "error" in r.stderr


def test_sample_cli_accepts_class_names(tmp_path):
    ck = tmp_path / "gray"
    assert _cli(TRAINING / "random_checkpoint.py", "--config", CONFIGS / "tiny-gray-x0.json", "-o", ck).returncode == 0
    r = _cli(TRAINING / "sample.py", "--checkpoint", ck, "--class", "one", "--steps", "2", "-o", tmp_path / "g.png")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "g.png").mode == "L"
    r = _cli(TRAINING / "sample.py", "--checkpoint", ck, "--class", "seven", "-o", tmp_path / "g.png")
    assert r.returncode == 1 and "unknown class 'seven'" in r.stderr


def test_sample_cli_reads_label_space_ids_names_and_synonyms(tmp_path):
    """--class as the API reads it (rin/classes.py mirrors the engine's ClassCatalog)."""
    cfg = rin.RINConfig.load(CONFIGS / "tiny-image-v.json")
    cfg.num_classes, cfg.null_class = 3, True
    cfg.class_names = ["golden retriever", "tabby", "crane"]
    cfg.label_space = {"name": "imagenet-1k", "ids": [207, 281, 134], "table": "imagenet-1k-classes.tsv"}
    cfg.validate()
    config_path = tmp_path / "config.json"
    cfg.save(config_path)
    ck = tmp_path / "imagenet-tiny"
    assert _cli(TRAINING / "random_checkpoint.py", "--config", config_path, "-o", ck).returncode == 0
    table = TRAINING.parent / "checkpoints" / "imagenet64" / "imagenet-1k-classes.tsv"
    (ck / "imagenet-1k-classes.tsv").write_bytes(table.read_bytes())
    assert rin.RINConfig.load(ck / "config.json").label_space == cfg.label_space

    from rin.classes import ClassCatalog, ClassLookupError
    catalog = ClassCatalog(cfg, "imagenet-tiny", str(ck))
    assert [catalog.resolve(t) for t in ("207", "golden retriever", "Golden_Retriever", "tabby cat", "134")] == [0, 0, 0, 1, 2]
    with pytest.raises(ClassLookupError, match=r"ImageNet class 0 \(tench\) is not one of the 3 classes of model 'imagenet-tiny'"):
        catalog.resolve("0")
    with pytest.raises(ClassLookupError, match=r"ambiguous in ImageNet: it names 134 \(crane\) or 517 \(crane, not in this model\)"):
        catalog.resolve("crane")
    with pytest.raises(ClassLookupError, match="ImageNet has no class 1000"):
        catalog.resolve("1000")

    r = _cli(TRAINING / "sample.py", "--checkpoint", ck, "--class", "golden_retriever", "--seed", "3", "--steps", "2",
             "-o", tmp_path / "g.png")
    assert r.returncode == 0, r.stderr
    model = rin.load_checkpoint(ck)
    expected = sample(model, class_index=0, seed=3, steps=2, sampler="ddim", schedule="cosine",
                      guidance=cfg.sampling["guidance"]).pixels[0, 0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")), expected)
    r = _cli(TRAINING / "sample.py", "--checkpoint", ck, "--class", "maillot", "-o", tmp_path / "m.png")
    assert r.returncode == 1 and "638 (maillot, not in this model) or 639 (maillot [tank suit]" in r.stderr


def test_sampling_takes_one_class_per_image():
    cfg = rin.RINConfig.load(CONFIGS / "tiny-image-v.json")
    model = rin.RIN(cfg).eval()
    model.reset_parameters()
    mixed = sample(model, class_index=[0, 1], seed=4, steps=2, guidance=1.0)
    first = sample(model, class_index=0, seed=4, steps=2, guidance=1.0, count=2)
    assert mixed.pixels.shape[0] == 2
    assert np.array_equal(mixed.pixels[0], first.pixels[0])
    with pytest.raises(ValueError, match="out of range"):
        sample(model, class_index=[0, 99], seed=4, steps=2)
