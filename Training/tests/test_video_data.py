"""Tests of the moving-image clips (video_data.py) and the video path of the trainer: shapes, value
range, determinism from the seed, and that the frames move as the motion parameters say."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import rin
import train
import video_data
from test_training import write_fake_pack

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def random_images(count=6, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8))


def still(count, **overrides):
    """Motion parameters of `count` clips that do not move, with `overrides` (tensors or floats)."""
    motion = {"scale0": torch.ones(count), "zoom": torch.zeros(count), "angle0": torch.zeros(count),
              "spin": torch.zeros(count), "shift0": torch.zeros(count, 2), "velocity": torch.zeros(count, 2),
              "flip": torch.zeros(count, dtype=torch.bool)}
    for key, value in overrides.items():
        motion[key] = value if torch.is_tensor(value) else torch.full_like(motion[key], value)
    return motion


def blob(cx, cy, sigma=1.3, size=32):
    """A uint8 image (1, size, size, 3): a white Gaussian spot centred at pixel (cx, cy) from the
    image centre, on black."""
    coords = torch.arange(size, dtype=torch.float64) + 0.5 - size / 2
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    spot = torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma ** 2))
    return (spot * 255).round().to(torch.uint8)[None, :, :, None].expand(1, size, size, 3).contiguous()


def centroid(frame, near, radius=5.0):
    """Intensity centroid (x, y, pixels from the centre) of channel 0 of a (H, W, C) [-1, 1] frame,
    over the pixels within `radius` of `near` (reflected copies of the spot lie farther away)."""
    size = frame.shape[0]
    coords = torch.arange(size, dtype=torch.float64) + 0.5 - size / 2
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    weight = (frame[..., 0].double() + 1) / 2
    weight = weight * (((x - near[0]) ** 2 + (y - near[1]) ** 2) <= radius ** 2)
    return float((weight * x).sum() / weight.sum()), float((weight * y).sum() / weight.sum())


def test_shapes_range_and_labels():
    images, labels = random_images(), torch.arange(6) % 10
    batch, classes, index, motion = video_data.clips(images, labels, 5, seed=3, frames=8)
    assert batch.shape == (5, 8, 32, 32, 3) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1
    assert torch.equal(classes, labels[index])
    assert video_data.clips(images, labels, 2, seed=3, frames=16)[0].shape == (2, 16, 32, 32, 3)
    assert video_data.to_uint8(batch).dtype == torch.uint8


def test_deterministic_from_the_seed():
    images, labels = random_images(), torch.arange(6)
    a = video_data.clips(images, labels, 4, seed=11)
    b = video_data.clips(images, labels, 4, seed=11)
    c = video_data.clips(images, labels, 4, seed=12)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert not torch.equal(a[0], c[0])


def test_a_still_clip_repeats_its_image():
    images = random_images(2)
    batch = video_data.render(images, still(2), frames=4)
    expected = images.float() / 127.5 - 1
    for f in range(4):
        assert torch.allclose(batch[:, f], expected, atol=1e-5)
    flipped = video_data.render(images, still(2, flip=torch.ones(2, dtype=torch.bool)), frames=1)
    assert torch.allclose(flipped[:, 0], expected.flip(2), atol=1e-5)


def test_a_pan_shifts_consecutive_frames_by_the_velocity():
    """Integer velocities: frame f+1 is frame f moved by exactly (vx, vy) pixels (away from the borders)."""
    images = random_images(3)
    velocity = torch.tensor([[2.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
    batch = video_data.render(images, still(3, velocity=velocity), frames=5)
    for b, (vx, vy) in enumerate(velocity.int().tolist()):
        for f in range(4):
            now, after = batch[b, f], batch[b, f + 1]
            # after[y, x] == now[y - vy, x - vx] over the interior
            inner = slice(4, 28)
            shifted = torch.roll(now, shifts=(vy, vx), dims=(0, 1))
            assert torch.allclose(after[inner, inner], shifted[inner, inner], atol=1e-5), (b, f)
        assert not torch.allclose(batch[b, 0], batch[b, 1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_spot_follows_the_motion_of_random_parameters(seed):
    """A spot at p in the source appears at s_f R(a_f) p + t_f in frame f (zoom, rotation and pan
    together), for random parameters."""
    generator = torch.Generator().manual_seed(seed)
    motion = video_data.sample_motion(1, generator)
    motion["flip"][:] = False
    p = torch.tensor([3.0, -2.0], dtype=torch.float64)
    frames = 8
    batch = video_data.render(blob(*p.tolist()), motion, frames)
    scale, angle, shift = video_data.frame_motion(motion, frames)
    moved = []
    for f in range(frames):
        a, s = float(angle[0, f]), float(scale[0, f])
        rotation = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
        expected = s * rotation @ p + shift[0, f].double()
        found = centroid(batch[0, f], expected.tolist())
        assert found == pytest.approx(expected.tolist(), abs=0.25), (f, found, expected)
        moved.append(found)
    # consecutive frames differ where the parameters say the clip moves
    steps = [math.dist(moved[f], moved[f + 1]) for f in range(frames - 1)]
    assert max(steps) > 0.05 or float(motion["velocity"].norm()) < 0.05


def test_sampled_parameters_stay_in_their_ranges():
    motion = video_data.sample_motion(2000, torch.Generator().manual_seed(0))
    assert motion["velocity"].norm(dim=1).max() <= video_data.MAX_SPEED + 1e-5
    assert motion["scale0"].min() >= video_data.SCALE0_RANGE[0] and motion["scale0"].max() <= video_data.SCALE0_RANGE[1]
    assert motion["zoom"].abs().max() <= video_data.MAX_ZOOM and motion["spin"].abs().max() <= video_data.MAX_SPIN
    assert 0.4 < motion["flip"].float().mean() < 0.6
    # directions cover the circle
    angles = torch.atan2(motion["velocity"][:, 1], motion["velocity"][:, 0])
    assert angles.min() < -2.5 and angles.max() > 2.5


def test_train_a_video_config_for_two_steps(tmp_path):
    pack = write_fake_pack(tmp_path / "p.npz")
    export = tmp_path / "export"
    config = tmp_path / "video.json"
    cfg = json.loads((CONFIGS / "cifar10-video.json").read_text())
    cfg.update({"interface": {"dim": 16, "heads": 2, "mlp_ratio": 2},
                "latents": {"count": 4, "dim": 16, "heads": 2, "mlp_ratio": 2}, "blocks": 1})
    config.write_text(json.dumps(cfg))
    train.main(["--config", str(config), "--run-dir", str(tmp_path / "run"), "--data-npz", str(pack),
                "--batch-size", "3", "--export", str(export), "--steps", "2", "--log-every", "1"])
    written = json.loads((export / "config.json").read_text())
    assert written["image"]["frames"] == 8 and written["training"]["steps"] == 2
    assert written["training"]["recipe"]["clip_motion"]["background"] == "reflection"
    assert "clips made from the CIFAR-10" in written["training"]["data"]
    assert written["sampling"]["fps"] == cfg["sampling"]["fps"]
    assert rin.load_checkpoint(export).cfg.frames == 8


def test_train_refuses_an_image_config_for_video_data(tmp_path):
    pack = write_fake_pack(tmp_path / "p.npz")
    with pytest.raises(SystemExit, match="cifar10-video needs 32x32 RGB clips"):
        train.main(["--config", str(CONFIGS / "cifar10-tiny.json"), "--run-dir", str(tmp_path / "r"),
                    "--data-npz", str(pack), "--dataset", "cifar10-video", "--steps", "1"])
