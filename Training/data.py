"""CIFAR-10 data for the trainer and the evaluator.

The project's copy of CIFAR-10 is two tar.gz archives of JPEG files (../shared/data/cifar10, see its
README). Decoding 60,000 JPEGs takes about a minute on this machine, so the images are decoded once
and cached as uint8 arrays in Training/scratch/ (git-ignored):

    Training/scratch/cifar10/{train,test}_images.npy   (N, 32, 32, 3) uint8, channels last
    Training/scratch/cifar10/{train,test}_labels.npy   (N,) int64, 0 airplane ... 9 truck

The GPU machine does not see ../shared, so `--pack OUT.npz` writes the train split's JPEG bytes (15.3 MB compressed)
into one file that `train.py --data-npz` reads and decodes.

    python Training/data.py                       # verify checksums, decode, cache; print a summary
    python Training/data.py --pack Training/scratch/cifar10-train.npz
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


def verify_checksums(source):
    """Checks both archives against SHA256SUMS; raises DataError naming the bad file."""
    sums_path = os.path.join(source, "SHA256SUMS")
    if not os.path.isfile(sums_path):
        raise DataError(f"missing {sums_path}")
    expected = {}
    with open(sums_path) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) == 2:
                expected[parts[1].lstrip("*")] = parts[0]
    for name in ARCHIVES.values():
        if name not in expected:
            raise DataError(f"{sums_path} has no entry for {name}")
    for name in ARCHIVES.values():
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


def decode_jpeg(blob, name):
    with Image.open(io.BytesIO(blob)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if pixels.shape != (32, 32, 3):
        raise DataError(f"{name} is {pixels.shape}, not 32x32x3")
    return pixels


def decode_archive(path, split):
    """(images uint8 (N, 32, 32, 3), labels int64 (N,)) of one archive."""
    entries = read_archive(path, split)
    images = np.stack([decode_jpeg(blob, f"{name} in {path}") for _, name, blob in entries])
    labels = np.array([label for label, _, _ in entries], dtype=np.int64)
    return images, labels


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
    os.makedirs(cache, exist_ok=True)
    # Write to temporary names first so an interrupted run never leaves a half-written cache.
    for path, array in ((images_path, images), (labels_path, labels)):
        temporary = path + ".tmp.npy"
        np.save(temporary, array)
        os.replace(temporary, path)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="folder with the archives and SHA256SUMS")
    parser.add_argument("--cache", default=DEFAULT_CACHE, help="folder for the decoded .npy cache")
    parser.add_argument("--pack", metavar="OUT.npz", help="write the train split to one compressed file")
    args = parser.parse_args()
    try:
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
