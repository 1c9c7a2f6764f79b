"""A small classifier that scores samples for Training/evaluate.py: 10-way CIFAR-10 or 200-way Tiny
ImageNet (64x64 images are averaged down to 32x32 first, for speed; samples and real images alike).

It is a plain VGG/ResNet-style CNN (three stages of 3x3 convolutions with batch norm and max pooling,
global max pooling, one linear layer), sized so that it trains in minutes on one CPU thread. Its
penultimate features (the pooled last stage) are what the Frechet distance in evaluate.py compares.

The trained weights are cached in Training/scratch/classifier/ (Tiny ImageNet:
Training/scratch/classifier-tiny-imagenet/; git-ignored) together with the held-out accuracy measured
after training (CIFAR-10: the test split; Tiny ImageNet: the validation split, top-1 and top-5), so
evaluate.py trains it only once.

    python Training/classifier.py --epochs 5                              # CIFAR-10
    python Training/classifier.py --dataset tiny-imagenet --epochs 4      # Tiny ImageNet
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402

DEFAULT_DIR = os.path.join(data.TRAINING_DIR, "scratch", "classifier")
DEFAULT_DIRS = {"cifar10": DEFAULT_DIR,
                "tiny-imagenet": os.path.join(data.TRAINING_DIR, "scratch", "classifier-tiny-imagenet")}
NUM_CLASSES = {"cifar10": 10, "tiny-imagenet": 200}


def load_dataset(dataset):
    """((train images, labels), (held-out images, labels)) as uint8 NHWC numpy arrays."""
    if dataset == "cifar10":
        return data.load_split("train"), data.load_split("test")
    return data.load_tiny_imagenet("train"), data.load_tiny_imagenet("val")
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


class ConvGroup(nn.Module):
    """conv -> pool -> BN -> GELU -> (conv -> BN -> GELU) with a residual on the second conv."""

    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels_out)

    def forward(self, x):
        # Pooling before the norm halves the norm's work and is what fast CIFAR nets do.
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return x + F.gelu(self.norm2(self.conv2(x)))


class SmallNet(nn.Module):
    def __init__(self, widths=(16, 32, 64, 128), num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.stem_norm = nn.BatchNorm2d(widths[0])
        self.groups = nn.Sequential(*[ConvGroup(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.widths = list(widths)

    def features(self, images):
        """images: float (B, 3, 32, 32) in [0, 1]. Returns the penultimate features (B, widths[-1])."""
        x = (images - MEAN.to(images.device)) / STD.to(images.device)
        x = F.gelu(self.stem_norm(self.stem(x)))
        x = self.groups(x)
        return torch.amax(x, dim=(2, 3))

    def forward(self, images):
        return self.head(self.features(images)) / 8.0


def to_float(images_uint8):
    """(B, 32, 32, 3) or (B, 64, 64, 3) uint8 numpy or tensor -> float (B, 3, 32, 32) in [0, 1]
    (64x64 images are averaged over 2x2 blocks)."""
    tensor = torch.as_tensor(images_uint8).permute(0, 3, 1, 2).float().div_(255.0)
    if tensor.shape[-1] == 64:
        tensor = F.avg_pool2d(tensor, 2)
    return tensor.contiguous(memory_format=torch.channels_last)


def augment(batch, generator):
    """Random horizontal flips and random translations by up to 2 pixels (reflect padding)."""
    flip = torch.rand(batch.shape[0], generator=generator) < 0.5
    batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(3), batch)
    padded = F.pad(batch, (2, 2, 2, 2), mode="reflect")
    dx, dy = torch.randint(0, 5, (2,), generator=generator).tolist()
    return padded[:, :, dy:dy + 32, dx:dx + 32].contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits(model, images_uint8, batch_size=500, flip_tta=True):
    model.eval()
    outputs = []
    for start in range(0, len(images_uint8), batch_size):
        batch = to_float(images_uint8[start:start + batch_size])
        logits = model(batch)
        if flip_tta:
            logits = logits + model(batch.flip(3))
        outputs.append(logits)
    return torch.cat(outputs)


@torch.no_grad()
def extract_features(model, images_uint8, batch_size=500):
    """Penultimate features (N, widths[-1]) as float64 numpy, for the Frechet distance."""
    model.eval()
    outputs = []
    for start in range(0, len(images_uint8), batch_size):
        outputs.append(model.features(to_float(images_uint8[start:start + batch_size])))
    return torch.cat(outputs).double().numpy()


def topk_accuracy(logits, labels, k):
    """Fraction of rows whose label is among the k largest logits."""
    top = torch.topk(logits, k, dim=1).indices.numpy()
    return float((top == np.asarray(labels)[:, None]).any(axis=1).mean())


def train(epochs, batch_size=256, lr=0.4, seed=0, log=print, dataset="cifar10"):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    (images, labels), (test_images, test_labels) = load_dataset(dataset)
    model = SmallNet(num_classes=NUM_CLASSES[dataset]).to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (decay if parameter.ndim > 1 else no_decay).append(parameter)
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4 * batch_size / lr / 256},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=lr, momentum=0.9, nesterov=True)
    steps_per_epoch = len(images) // batch_size
    total_steps = epochs * steps_per_epoch
    warmup = steps_per_epoch // 2

    def lr_at(step):
        if step < warmup:
            return lr * (step + 1) / warmup
        return lr * max(0.0, (total_steps - step) / (total_steps - warmup))

    labels_tensor = torch.as_tensor(labels)
    started = time.time()
    step = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total_loss = 0.0
        for index in range(steps_per_epoch):
            chosen = order[index * batch_size:(index + 1) * batch_size]
            batch = augment(to_float(images[chosen.numpy()]), generator)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            # float32: bfloat16 autocast is emulated (about 40x slower) on CPUs without AVX512-BF16.
            logits = model(batch)
            loss = F.cross_entropy(logits.float(), labels_tensor[chosen], label_smoothing=0.2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            step += 1
        logits = predict_logits(model, test_images)
        accuracy, top5 = topk_accuracy(logits, test_labels, 1), topk_accuracy(logits, test_labels, 5)
        log(f"classifier epoch {epoch + 1}/{epochs}: loss {total_loss / steps_per_epoch:.3f}, "
            f"held-out top-1 {accuracy:.4f} top-5 {top5:.4f}, {time.time() - started:.0f} s")
    return model, float(accuracy), float(top5), time.time() - started


def load_cached(directory=DEFAULT_DIR):
    """Returns (model, info dict) or None when no classifier is cached."""
    weights = os.path.join(directory, "classifier.pt")
    info_path = os.path.join(directory, "classifier.json")
    if not (os.path.isfile(weights) and os.path.isfile(info_path)):
        return None
    with open(info_path) as handle:
        info = json.load(handle)
    model = SmallNet(widths=info["widths"], num_classes=info.get("classes", 10)).to(memory_format=torch.channels_last)
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.eval()
    return model, info


def get_classifier(directory=DEFAULT_DIR, epochs=5, log=print, dataset="cifar10"):
    """The cached classifier, trained first if there is none."""
    cached = load_cached(directory)
    if cached is not None:
        return cached
    model, accuracy, top5, seconds = train(epochs, log=log, dataset=dataset)
    os.makedirs(directory, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(directory, "classifier.pt.tmp"))
    os.replace(os.path.join(directory, "classifier.pt.tmp"), os.path.join(directory, "classifier.pt"))
    info = {"test_accuracy": accuracy, "test_top5": top5, "epochs": epochs, "train_seconds": round(seconds, 1),
            "threads": torch.get_num_threads(), "widths": model.widths, "dataset": dataset,
            "classes": NUM_CLASSES[dataset]}
    with open(os.path.join(directory, "classifier.json"), "w") as handle:
        json.dump(info, handle, indent=1)
    return model, info


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dataset", default="cifar10", choices=sorted(NUM_CLASSES))
    parser.add_argument("--dir", help="cache folder (default: Training/scratch/classifier[-tiny-imagenet])")
    parser.add_argument("--benchmark", type=int, default=0, metavar="STEPS",
                        help="only time STEPS training steps and exit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.benchmark:
        model = SmallNet().to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        batch = torch.rand(256, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        target = torch.randint(0, 10, (256,))
        for step in range(args.benchmark + 1):
            if step == 1:
                started = time.time()
            loss = F.cross_entropy(model(batch), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = (time.time() - started) / args.benchmark
        print(f"{256 / seconds:.0f} images/s; an epoch takes {50000 / 256 * seconds:.0f} s")
        return
    model, info = get_classifier(args.dir or DEFAULT_DIRS[args.dataset], args.epochs, dataset=args.dataset)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
