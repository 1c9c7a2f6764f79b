"""Tests of the CIFAR-10 data pack, the trainer and the evaluator's Frechet distance (fast: tiny
config, a handful of synthetic JPEGs, a few optimizer steps)."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import data
import evaluate
import rin
import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write_fake_pack(path, count=24, seed=0):
    """A file in data.py --pack's layout holding `count` random 32x32 JPEGs."""
    rng = np.random.default_rng(seed)
    blobs, labels = [], []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="JPEG")
        blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
        labels.append(i % 10)
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    np.savez_compressed(path, jpeg=np.concatenate(blobs), offsets=offsets, labels=np.array(labels, np.uint8))
    return path


def test_pack_round_trip(tmp_path):
    images, labels = data.load_npz(write_fake_pack(tmp_path / "p.npz"))
    assert images.shape == (24, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [i % 10 for i in range(24)]


def test_pack_errors(tmp_path):
    with pytest.raises(data.DataError, match="missing packed"):
        data.load_npz(tmp_path / "absent.npz")
    np.savez(tmp_path / "nokeys.npz", images=np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(data.DataError, match="lacks 'jpeg'"):
        data.load_npz(tmp_path / "nokeys.npz")
    np.savez(tmp_path / "bad.npz", jpeg=np.zeros(10, np.uint8), offsets=np.array([0, 5]), labels=np.array([0]))
    with pytest.raises(data.DataError, match="do not agree"):
        data.load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "label.npz", jpeg=np.zeros(10, np.uint8), offsets=np.array([0, 10]), labels=np.array([10]))
    with pytest.raises(data.DataError, match="0..9"):
        data.load_npz(tmp_path / "label.npz")


def test_checksum_errors(tmp_path):
    with pytest.raises(data.DataError, match="missing .*SHA256SUMS"):
        data.verify_checksums(str(tmp_path))
    (tmp_path / "SHA256SUMS").write_text("00  cifar10-train-jpg.tar.gz\n")
    with pytest.raises(data.DataError, match="no entry for cifar10-test"):
        data.verify_checksums(str(tmp_path))
    (tmp_path / "SHA256SUMS").write_text("00  cifar10-train-jpg.tar.gz\n00  cifar10-test-jpg.tar.gz\n")
    with pytest.raises(data.DataError, match="missing archive"):
        data.verify_checksums(str(tmp_path))
    (tmp_path / "cifar10-train-jpg.tar.gz").write_bytes(b"x")
    with pytest.raises(data.DataError, match="checksum mismatch"):
        data.verify_checksums(str(tmp_path))


def test_train_exports_and_resumes(tmp_path):
    pack = write_fake_pack(tmp_path / "p.npz")
    run, export = tmp_path / "run", tmp_path / "export"
    common = ["--config", str(CONFIGS / "cifar10-tiny.json"), "--run-dir", str(run), "--data-npz", str(pack),
              "--batch-size", "4", "--export", str(export), "--log-every", "1"]
    train.main(common + ["--steps", "2"])
    config = json.loads((export / "config.json").read_text())
    assert config["training"]["steps"] == 2
    assert config["training"]["recipe"]["batch_size"] == 4
    assert config["classes"]["names"][9] == "truck"
    model = rin.load_checkpoint(export)
    assert sum(p.numel() for p in model.parameters()) > 0
    train.main(common + ["--steps", "3", "--resume"])
    assert json.loads((export / "config.json").read_text())["training"]["steps"] == 3
    assert "resumed from" in (run / "train.log").read_text()


def test_train_refuses_a_config_of_another_data_set(tmp_path):
    pack = write_fake_pack(tmp_path / "p.npz")
    with pytest.raises(SystemExit, match="--dataset cifar10 needs 32x32 RGB images and 10 classes"):
        train.main(["--config", str(CONFIGS / "tiny-image-v.json"), "--run-dir", str(tmp_path / "r"),
                    "--data-npz", str(pack), "--steps", "1"])


def test_train_reports_a_missing_pack(tmp_path):
    with pytest.raises(SystemExit, match="data error"):
        train.main(["--config", str(CONFIGS / "cifar10-tiny.json"), "--run-dir", str(tmp_path / "r"),
                    "--data-npz", str(tmp_path / "absent.npz"), "--steps", "1"])


def test_learning_rate_warms_up_and_decays():
    args = train.parse_args(["--config", "c", "--run-dir", "r", "--lr", "1.0", "--warmup", "10",
                             "--decay-minutes", "1", "--min-lr-ratio", "0.1"])
    assert train.learning_rate(args, 0, 0.0) == pytest.approx(0.1)
    assert train.learning_rate(args, 100, 0.0) == pytest.approx(1.0)
    assert train.learning_rate(args, 100, 30.0) == pytest.approx(0.55)
    assert train.learning_rate(args, 100, 120.0) == pytest.approx(0.1)


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 6))
    assert abs(evaluate.frechet_distance(a, a)) < 1e-8
    # Same covariance, means 2 apart in one coordinate: the distance is the squared mean difference.
    shifted = a.copy()
    shifted[:, 0] += 2.0
    assert evaluate.frechet_distance(a, shifted) == pytest.approx(4.0, abs=1e-6)
    # Scaled by 3: covariances commute, so the distance is |2 mu|^2 + (3 - 1)^2 tr(S).
    expected = 4.0 * (a.mean(0) ** 2).sum() + 4.0 * np.trace(np.cov(a, rowvar=False))
    assert evaluate.frechet_distance(a, 3 * a) == pytest.approx(expected, rel=1e-6)


def test_evaluate_argument_errors():
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--checkpoint", "x", "--guidance", "-1"])
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--guidance", "1"])  # no checkpoint
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--checkpoint", "x", "--no-carry", "--compare-carry"])
    assert evaluate.parse_args(["--checkpoint", "x", "--guidance", "0,1,3"]).guidance == [0.0, 1.0, 3.0]


def test_tiny_imagenet_classes_and_label_space():
    """classes.tsv of ../shared: 200 rows in wnid order with their ImageNet ids; the trainer writes
    them as the checkpoint's imagenet-1k label space."""
    rows = data.tiny_imagenet_classes()
    assert len(rows) == 200 and [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert (207, "golden retriever") in [(r[1], r[2]) for r in rows]
    cfg = rin.RINConfig.load(CONFIGS / "imagenet64-bundled.json")
    args = train.parse_args(["--config", str(CONFIGS / "imagenet64-bundled.json"), "--run-dir", "/tmp/unused"])
    train.configure_classes(cfg, args)
    assert args.dataset == "tiny-imagenet"
    assert cfg.label_space["name"] == "imagenet-1k" and len(cfg.label_space["ids"]) == 200
    assert cfg.class_names[cfg.label_space["ids"].index(207)] == "golden retriever"
    cfg.validate()
    preview = train.preview_classes(cfg)
    assert len(preview) == 10 and cfg.label_space["ids"][preview[0]] == 207
    chosen = evaluate.evaluated_classes(cfg, "tiny-imagenet", 20)
    assert len(chosen) <= 20 and cfg.label_space["ids"].index(207) in chosen
    wrong = rin.RINConfig.load(CONFIGS / "cifar10-tiny.json")
    with pytest.raises(SystemExit, match="needs 64x64"):
        train.configure_classes(wrong, train.parse_args(["--config", "x", "--run-dir", "/tmp/u", "--dataset", "tiny-imagenet"]))
