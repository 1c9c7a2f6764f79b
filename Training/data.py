"""CIFAR-10 and Tiny ImageNet data for the trainer and the evaluator.

The project's copy of CIFAR-10 is two tar.gz archives of JPEG files (../shared/data/cifar10, see its
README). Decoding 60,000 JPEGs takes about a minute on this machine, so the images are decoded once
and cached as uint8 arrays in Training/scratch/ (git-ignored):

    Training/scratch/cifar10/{train,test}_images.npy   (N, 32, 32, 3) uint8, channels last
    Training/scratch/cifar10/{train,test}_labels.npy   (N,) int64, 0 airplane ... 9 truck

The GPU machine does not see ../shared, so `--pack OUT.npz` writes the train split's JPEG bytes (15.3 MB compressed)
into one file that `train.py --data-npz` reads and decodes.

    python Training/data.py                       # verify checksums, decode, cache; print a summary
    python Training/data.py --pack Training/scratch/cifar10-train.npz
    python Training/data.py --dataset tiny-imagenet   # Tiny ImageNet: verify, decode, cache

Tiny ImageNet (../shared/data/tiny-imagenet, see its README) is cached the same way, 64x64:

    Training/scratch/tiny-imagenet/{train,val}_images.npy   (N, 64, 64, 3) uint8
    Training/scratch/tiny-imagenet/{train,val}_labels.npy   (N,) int64, the class's row in classes.tsv
                                                            (wnids in sorted order, 0..199)

`tiny_imagenet_classes()` gives each row's wnid, ImageNet-1k index, name and synonyms.
"""

import argparse
import hashlib
import io
import os
import sys
import tarfile

import numpy as np
from PIL import Image

CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]

TRAINING_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TRAINING_DIR)
DEFAULT_SOURCE = os.path.join(REPO_DIR, "..", "shared", "data", "cifar10")
DEFAULT_CACHE = os.path.join(TRAINING_DIR, "scratch", "cifar10")
TINY_SOURCE = os.path.join(REPO_DIR, "..", "shared", "data", "tiny-imagenet")
TINY_CACHE = os.path.join(TRAINING_DIR, "scratch", "tiny-imagenet")
IMAGENET_TABLE = os.path.join(REPO_DIR, "..", "shared", "data", "imagenet-1k-classes.tsv")
TINY_ARCHIVES = {"train": [f"train-{k}-of-5.tar.gz" for k in range(1, 6)], "val": ["val.tar.gz"]}
TINY_SPLIT_SIZES = {"train": 100_000, "val": 10_000}

ARCHIVES = {"train": "cifar10-train-jpg.tar.gz", "test": "cifar10-test-jpg.tar.gz"}
SPLIT_SIZES = {"train": 50_000, "test": 10_000}


class DataError(Exception):
    """The data set is missing, damaged or not what the code expects."""


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksums(source, names=None):
    """Checks the archives against SHA256SUMS; raises DataError naming the bad file."""
    names = list(ARCHIVES.values()) if names is None else names
    sums_path = os.path.join(source, "SHA256SUMS")
    if not os.path.isfile(sums_path):
        raise DataError(f"missing {sums_path}")
    expected = {}
    with open(sums_path) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) == 2:
                expected[parts[1].lstrip("*")] = parts[0]
    for name in names:
        if name not in expected:
            raise DataError(f"{sums_path} has no entry for {name}")
    for name in names:
        path = os.path.join(source, name)
        if not os.path.isfile(path):
            raise DataError(f"missing archive {path}")
        actual = sha256_of(path)
        if actual != expected[name]:
            raise DataError(f"checksum mismatch for {path}: {actual} != {expected[name]}")


def read_archive(path, split):
    """Returns [(class index, file name, JPEG bytes)] for every `<split>/<class>/NNNN.jpg` member,
    sorted by (class index, file name)."""
    entries = []
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            if not member.isfile() or not member.name.lower().endswith(".jpg"):
                continue
            parts = member.name.split("/")
            if len(parts) != 3 or parts[0] != split or parts[1] not in CLASS_NAMES:
                raise DataError(f"unexpected member {member.name} in {path}")
            entries.append((CLASS_NAMES.index(parts[1]), parts[2], archive.extractfile(member).read()))
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    if len(entries) != SPLIT_SIZES[split]:
        raise DataError(f"{path} holds {len(entries)} images, expected {SPLIT_SIZES[split]}")
    return entries


def decode_jpeg(blob, name, size=32):
    with Image.open(io.BytesIO(blob)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)  # ~1.3% of Tiny ImageNet is grayscale
    if pixels.shape != (size, size, 3):
        raise DataError(f"{name} is {pixels.shape}, not {size}x{size}x3")
    return pixels


def decode_archive(path, split):
    """(images uint8 (N, 32, 32, 3), labels int64 (N,)) of one archive."""
    entries = read_archive(path, split)
    images = np.stack([decode_jpeg(blob, f"{name} in {path}") for _, name, blob in entries])
    labels = np.array([label for label, _, _ in entries], dtype=np.int64)
    return images, labels


def save_cache(cache, arrays):
    """Writes (path, array) pairs as .npy under `cache`, each to a temporary name first so an
    interrupted run never leaves a half-written cache."""
    os.makedirs(cache, exist_ok=True)
    for path, array in arrays:
        temporary = path + ".tmp.npy"
        np.save(temporary, array)
        os.replace(temporary, path)


def load_split(split, source=DEFAULT_SOURCE, cache=DEFAULT_CACHE, verbose=True):
    """Returns (images uint8 (N, 32, 32, 3), labels int64 (N,)) for "train" or "test".

    The first call verifies the checksums and decodes; later calls read the .npy cache."""
    if split not in ARCHIVES:
        raise DataError(f"unknown split {split!r}; use one of {sorted(ARCHIVES)}")
    images_path = os.path.join(cache, f"{split}_images.npy")
    labels_path = os.path.join(cache, f"{split}_labels.npy")
    if os.path.isfile(images_path) and os.path.isfile(labels_path):
        images, labels = np.load(images_path), np.load(labels_path)
        if images.shape == (SPLIT_SIZES[split], 32, 32, 3) and labels.shape == (SPLIT_SIZES[split],):
            return images, labels
        if verbose:
            print(f"cache {images_path} has the wrong shape; decoding again", file=sys.stderr)
    if verbose:
        print(f"verifying and decoding {split} from {source} (once; cached in {cache})", file=sys.stderr)
    verify_checksums(source)
    images, labels = decode_archive(os.path.join(source, ARCHIVES[split]), split)
    save_cache(cache, ((images_path, images), (labels_path, labels)))
    return images, labels


def load_npz(path):
    """Reads a file written by `--pack`: returns (images uint8 (N, 32, 32, 3), labels int64 (N,)).

    The pack holds the original JPEG bytes (15.3 MB compressed instead of 142 MB of pixels, which do not compress),
    decoded here; about 15 s on one core."""
    if not os.path.isfile(path):
        raise DataError(f"missing packed data file {path}")
    with np.load(path) as packed:
        for key in ("jpeg", "offsets", "labels"):
            if key not in packed:
                raise DataError(f"{path} lacks '{key}' (write it with data.py --pack)")
        blob, offsets, labels = packed["jpeg"], packed["offsets"], packed["labels"].astype(np.int64)
    if offsets.ndim != 1 or labels.shape != (len(offsets) - 1,) or offsets[-1] != len(blob):
        raise DataError(f"{path}: offsets, labels and the JPEG buffer do not agree")
    if labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{path}: labels must be in 0..9")
    images = np.stack([decode_jpeg(blob[offsets[i]:offsets[i + 1]].tobytes(), f"image {i} of {path}")
                       for i in range(len(labels))])
    return images, labels


def pack(out_path, source=DEFAULT_SOURCE):
    """Writes the train split's JPEG bytes, offsets and labels to one .npz; returns its size."""
    verify_checksums(source)
    entries = read_archive(os.path.join(source, ARCHIVES["train"]), "train")
    blobs = [np.frombuffer(blob, dtype=np.uint8) for _, _, blob in entries]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(blob) for blob in blobs])
    labels = np.array([label for label, _, _ in entries], dtype=np.uint8)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    np.savez_compressed(out_path, jpeg=np.concatenate(blobs), offsets=offsets, labels=labels,
             class_names=np.array(CLASS_NAMES))
    return os.path.getsize(out_path)


def tiny_imagenet_classes(source=TINY_SOURCE):
    """[(wnid, imagenet1k_index, name, [synonyms])] from classes.tsv, in sorted wnid order: the row is
    the model's class index."""
    path = os.path.join(source, "classes.tsv")
    if not os.path.isfile(path):
        raise DataError(f"missing {path}")
    rows = []
    with open(path) as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header[:3] != ["wnid", "imagenet1k_index", "name"]:
            raise DataError(f"{path}: unexpected header {header}")
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            synonyms = [w.strip() for w in parts[3].split(",")] if len(parts) > 3 else [parts[2]]
            rows.append((parts[0], int(parts[1]), parts[2], [w for w in synonyms if w]))
    rows.sort(key=lambda row: row[0])
    if len(rows) != 200:
        raise DataError(f"{path} lists {len(rows)} classes, expected 200")
    return rows


def read_tiny_archives(source, split):
    """[(class row, file name, JPEG bytes)] of one Tiny ImageNet split, sorted by (row, file name)."""
    classes = tiny_imagenet_classes(source)
    row_of = {wnid: row for row, (wnid, _, _, _) in enumerate(classes)}
    entries = []
    for name in TINY_ARCHIVES[split]:
        path = os.path.join(source, name)
        with tarfile.open(path, "r:gz") as archive:
            members = {}
            annotations = None
            for member in archive:
                if not member.isfile():
                    continue
                if member.name.endswith("val_annotations.txt"):
                    annotations = archive.extractfile(member).read().decode()
                elif member.name.upper().endswith(".JPEG"):
                    members[member.name] = archive.extractfile(member).read()
        if split == "train":
            for member_name, blob in members.items():
                parts = member_name.split("/")  # tiny-imagenet-200/train/<wnid>/images/<file>
                if len(parts) != 5 or parts[1] != "train" or parts[2] not in row_of:
                    raise DataError(f"unexpected member {member_name} in {path}")
                entries.append((row_of[parts[2]], parts[4], blob))
        else:
            if annotations is None:
                raise DataError(f"{path} has no val_annotations.txt")
            by_file = {m.split("/")[-1]: blob for m, blob in members.items()}
            for line in annotations.splitlines():
                parts = line.split("\t")
                if len(parts) < 2:
                    continue
                if parts[0] not in by_file or parts[1] not in row_of:
                    raise DataError(f"{path}: annotation {parts[0]} {parts[1]} has no image or class")
                entries.append((row_of[parts[1]], parts[0], by_file[parts[0]]))
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    if len(entries) != TINY_SPLIT_SIZES[split]:
        raise DataError(f"Tiny ImageNet {split} holds {len(entries)} images, expected {TINY_SPLIT_SIZES[split]}")
    return entries


def load_tiny_imagenet(split, source=TINY_SOURCE, cache=TINY_CACHE, verbose=True):
    """Returns (images uint8 (N, 64, 64, 3), labels int64 (N,)) for "train" or "val"; the label is
    the class's row in `tiny_imagenet_classes()`. Decoded once, then read from the .npy cache."""
    if split not in TINY_ARCHIVES:
        raise DataError(f"unknown split {split!r}; use one of {sorted(TINY_ARCHIVES)}")
    images_path = os.path.join(cache, f"{split}_images.npy")
    labels_path = os.path.join(cache, f"{split}_labels.npy")
    size = TINY_SPLIT_SIZES[split]
    if os.path.isfile(images_path) and os.path.isfile(labels_path):
        images, labels = np.load(images_path), np.load(labels_path)
        if images.shape == (size, 64, 64, 3) and labels.shape == (size,):
            return images, labels
    if verbose:
        print(f"verifying and decoding Tiny ImageNet {split} from {source} (once; cached in {cache})",
              file=sys.stderr)
    verify_checksums(source, TINY_ARCHIVES[split] + ["classes.tsv"])
    entries = read_tiny_archives(source, split)
    images = np.stack([decode_jpeg(blob, name, size=64) for _, name, blob in entries])
    labels = np.array([row for row, _, _ in entries], dtype=np.int64)
    save_cache(cache, ((images_path, images), (labels_path, labels)))
    return images, labels


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "tiny-imagenet"])
    parser.add_argument("--source", help="folder with the archives and SHA256SUMS (default: ../shared/data/DATASET)")
    parser.add_argument("--cache", help="folder for the decoded .npy cache (default: Training/scratch/DATASET)")
    parser.add_argument("--pack", metavar="OUT.npz", help="write the train split to one compressed file")
    args = parser.parse_args()
    try:
        if args.dataset == "tiny-imagenet":
            for split in ("train", "val"):
                images, labels = load_tiny_imagenet(split, args.source or TINY_SOURCE, args.cache or TINY_CACHE)
                counts = np.bincount(labels, minlength=200)
                print(f"{split}: {images.shape} {images.dtype}, {counts.min()}..{counts.max()} per class, "
                      f"mean pixel {images.mean():.1f}")
            return
        args.source, args.cache = args.source or DEFAULT_SOURCE, args.cache or DEFAULT_CACHE
        if args.pack:
            size = pack(args.pack, args.source)
            print(f"wrote {args.pack}: {size / 1e6:.1f} MB")
            return
        for split in ("train", "test"):
            images, labels = load_split(split, args.source, args.cache)
            counts = np.bincount(labels, minlength=len(CLASS_NAMES))
            print(f"{split}: {images.shape} {images.dtype}, per class {counts.tolist()}, "
                  f"mean pixel {images.mean():.1f}")
    except DataError as error:
        sys.exit(f"data error: {error}")


if __name__ == "__main__":
    main()
