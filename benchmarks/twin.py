#!/usr/bin/python3
"""The PyTorch twin of Bake's benchmark jobs: the best ordinary PyTorch CPU loop for the same work.

    /usr/bin/python3 benchmarks/twin.py train --data data/fashion-mnist-subset [--epochs 8] [--per-class 0] --out DIR
    /usr/bin/python3 benchmarks/twin.py time --model cnn --batch 128 --channels 1 --image-size 28 [--classes 10]
    /usr/bin/python3 benchmarks/twin.py layers --model cnn --batch 128 --channels 1 --image-size 28 [--classes 10]

`train` is Bake's default job (configs/embedded/BAKE-cnn.yaml) written as a plain loop: the `cnn` model, BAKE's
per-class sampler (64 anchors + 1 same-class image each), random crop (zero padding ceil(side/8)) + horizontal flip
+ normalisation by the training set's mean/std, SGD (momentum 0.9, Nesterov, weight decay 5e-4, lr 0.1, cosine per
epoch), the BAKE loss (CE + tau^2 KL to the closed-form ensembled targets, tau 4, omega 0.5, lambda 1), evaluation
(batch 500) and a checkpoint (torch.save of model and optimizer) after every epoch. `--data` is an IDX folder
(Fashion-MNIST layout, .gz) or an ImageFolder (train/<class>/*, test/<class>/*), decoded once into memory.

`time` mirrors `bake time`: forward (eval, no grad), forward + CE + backward, forward + BAKE + backward, and BAKE's
soft targets + KD on fixed features/logits; steps interleaved, medians in ms.

Best ordinary practice on a 2-core CPU: channels_last (measured faster here), zero_grad(set_to_none=True), no
per-step .item() (the loss is read every LOG_PERIOD iterations), augmentation of whole uint8 batches in the main
process (no DataLoader worker processes competing with the 2 intra-op threads), 2 threads. Exits with status 3 and a
printed reason when PyTorch is missing.
"""
import argparse
import gzip
import math
import os
import struct
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as error:  # the driver prints this and skips the twin
    print(f"twin skipped: PyTorch is not available to {sys.executable} ({error})")
    sys.exit(3)

torch.set_num_threads(2)
CHANNELS_LAST = torch.channels_last


# ---------------------------------------------------------------------------------------------------------- models
class SmallCnn(nn.Module):
    """Bake's `cnn`: 3 x (conv3x3 no bias, BN, ReLU, 2x2 max pool), widths 32-64-128, global average pool, linear."""

    def __init__(self, channels, classes, widths=(32, 64, 128)):
        super().__init__()
        layers, inputs = [], channels
        for width in widths:
            layers += [nn.Conv2d(inputs, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            inputs = width
        self.trunk = nn.Sequential(*layers)
        self.fc = nn.Linear(inputs, classes)

    def features(self, x):
        return F.adaptive_avg_pool2d(self.trunk(x), 1).flatten(1)

    def head(self, f):
        return self.fc(f)


class PreActResNet18(nn.Module):
    """The official small-scale PreAct ResNet-18 (tests/fixtures/reference_models.py, the model Bake's fixtures check
    its own against), split into features and head."""

    def __init__(self, channels, classes):
        super().__init__()
        self.net = reference_models().CifarPreActResNet18(classes)
        if channels != 3:
            self.net.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)

    def features(self, x):
        n = self.net
        out = F.relu(n.bn1(n.conv1(x)))
        for index in range(1, 5):
            out = getattr(n, f"layer{index}")(out)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def head(self, f):
        return self.net.linear(f)


class TorchvisionResNet(nn.Module):
    """torchvision's resnet18 (ImageNet stem), split into features and head as Bake's Classifier is."""

    def __init__(self, channels, classes):
        super().__init__()
        import torchvision
        self.net = torchvision.models.resnet18(num_classes=classes)
        if channels != 3:
            self.net.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)

    def features(self, x):
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return n.avgpool(x).flatten(1)

    def head(self, f):
        return self.net.fc(f)


def reference_models():
    """tests/fixtures/reference_models.py: the PyTorch models Bake's fixtures check its own against."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures"))
    import reference_models as models
    return models


class CifarResNet(nn.Module):
    """The CIFAR ResNets of the distillation literature (CRD's resnet.py, option-B shortcuts), the reference model
    Bake's fixtures check its own against, split into features and head."""

    def __init__(self, name, channels, classes):
        super().__init__()
        self.net = reference_models().cifar_resnet(name, classes)
        if channels != 3:
            self.net.conv1 = nn.Conv2d(channels, self.net.conv1.out_channels, 3, 1, 1, bias=False)

    def features(self, x):
        n = self.net
        x = n.layer3(n.layer2(n.layer1(F.relu(n.bn1(n.conv1(x))))))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def head(self, f):
        return self.net.fc(f)


def build(name, channels, classes):
    if name == "cnn":
        model = SmallCnn(channels, classes)
    elif name == "preact-resnet18":
        model = PreActResNet18(channels, classes)
    elif name == "resnet18":
        model = TorchvisionResNet(channels, classes)
    elif name in reference_models().CIFAR_RESNETS:
        model = CifarResNet(name, channels, classes)
    else:
        raise SystemExit(f"twin: no PyTorch twin for model {name} (cnn, preact-resnet18, resnet18, {', '.join(reference_models().CIFAR_RESNETS)})")
    return model.to(memory_format=CHANNELS_LAST)


# ------------------------------------------------------------------------------------------------------------ BAKE
def bake_targets(features, logits, temperature=4.0, omega=0.5):
    """Closed-form knowledge ensembling (Eq. 9): (I - omega A)^-1 (1 - omega) P, A = row softmax of cosine
    affinities with the diagonal masked, P = softmax(z / tau); no gradient."""
    with torch.no_grad():
        unit = F.normalize(features.detach(), dim=1)
        affinity = unit @ unit.t()
        n = affinity.shape[0]
        affinity = affinity.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf")).softmax(dim=1)
        probs = F.softmax(logits.detach() / temperature, dim=1)
        system = torch.eye(n) - omega * affinity
        return torch.linalg.solve(system, (1 - omega) * probs).clamp_min(0)


def kd(logits, targets, temperature=4.0):
    return F.kl_div(F.log_softmax(logits / temperature, dim=1), targets, reduction="batchmean") * temperature ** 2


def bake_loss(features, logits, labels, temperature=4.0, omega=0.5, weight=1.0):
    ce = F.cross_entropy(logits, labels)
    return ce + weight * kd(logits, bake_targets(features, logits, temperature, omega), temperature)


# ------------------------------------------------------------------------------------------------------------ data
def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def read_folder(root, keep=None):
    """An ImageFolder's train and test splits; `keep(labels)` picks the training images to decode (all by default)."""
    from PIL import Image
    classes = sorted(d for d in os.listdir(os.path.join(root, "train")) if os.path.isdir(os.path.join(root, "train", d)))

    def split(name, pick):
        files = [(os.path.join(root, name, cls, file), label) for label, cls in enumerate(classes)
                 for file in sorted(os.listdir(os.path.join(root, name, cls)))]
        labels = np.array([label for _, label in files])
        chosen = pick(labels) if pick else np.arange(len(files))
        images = []
        for index in chosen:
            with Image.open(files[index][0]) as image:
                images.append(np.asarray(image.convert("RGB")))
        return np.stack(images).transpose(0, 3, 1, 2).copy(), labels[chosen]

    return split("train", keep), split("test", None)


def load(root, keep=None):
    """uint8 N x C x H x W tensors and int64 labels: (train images, train labels), (test images, test labels)."""
    if os.path.exists(os.path.join(root, "train-images-idx3-ubyte.gz")):
        train = read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"))[:, None], read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz"))
        if keep:
            chosen = keep(train[1])
            train = train[0][chosen], train[1][chosen]
        test = read_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"))[:, None], read_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"))
    else:
        # Only the images the job trains on are decoded (Bake decodes the whole folder: the twin is not handicapped).
        train, test = read_folder(root, keep)
    as_tensors = lambda s: (torch.from_numpy(np.ascontiguousarray(s[0])), torch.from_numpy(s[1].astype(np.int64)))
    return as_tensors(train), as_tensors(test)


def per_class(labels, count, seed):
    """The first `count` images of each class in a seeded shuffle (TRAIN.PER_CLASS), in their original order."""
    order = np.random.default_rng(seed).permutation(len(labels))
    kept = np.concatenate([order[labels[order] == c][:count] for c in np.unique(labels)])
    return np.sort(kept)


def bake_batches(labels, anchors, rng):
    """BAKE's per-class sampler: a permutation sliced into groups of `anchors`, each followed by one other image of
    each anchor's class (drawn uniformly)."""
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    order = rng.permutation(len(labels))
    batches = []
    for start in range(0, len(order), anchors):
        group = order[start:start + anchors]
        partners = []
        for anchor in group:
            members = by_class[labels[anchor]]
            if len(members) == 1:
                partners.append(anchor)
                continue
            j = rng.integers(len(members) - 1)
            j += j >= np.searchsorted(members, anchor)  # skip the anchor itself
            partners.append(members[j])
        batches.append(np.concatenate([group, np.array(partners)]))
    return batches


class Augment:
    """Random crop (zero padding) + horizontal flip + normalisation of whole uint8 batches, channels_last float out."""

    def __init__(self, images, mean, std, flip):
        self.side = images.shape[-1]
        self.pad = (self.side + 7) // 8
        self.padded = F.pad(images, [self.pad] * 4)  # uint8, padded once
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.flip = flip

    def __call__(self, indices, rng):
        n, s = len(indices), self.side
        tops, lefts = rng.integers(0, 2 * self.pad + 1, size=(2, n))
        out = torch.empty((n, self.padded.shape[1], s, s), dtype=torch.uint8)
        for i, (index, top, left) in enumerate(zip(indices, tops, lefts)):
            out[i] = self.padded[index, :, top:top + s, left:left + s]
        if self.flip:
            mask = torch.from_numpy(rng.random(n) < 0.5).view(n, 1, 1, 1)
            out = torch.where(mask, out.flip(3), out)
        return ((out.float() - self.mean) / self.std).contiguous(memory_format=CHANNELS_LAST)


def normalise(images, mean, std):
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255
    return ((images.float() - m) / s).contiguous(memory_format=CHANNELS_LAST)


# ----------------------------------------------------------------------------------------------------------- train
def train(args):
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    keep = (lambda labels: per_class(labels, args.per_class, args.seed)) if args.per_class > 0 else None
    (train_images, train_labels), (test_images, test_labels) = load(args.data, keep)
    pixels = train_images.float() / 255
    mean = pixels.mean(dim=(0, 2, 3)).tolist()
    std = pixels.std(dim=(0, 2, 3), unbiased=False).tolist()
    del pixels
    classes = int(train_labels.max()) + 1
    labels_np = train_labels.numpy()
    print(f"data: {len(train_labels)} training and {len(test_labels)} test images ready in {time.perf_counter() - started:.1f}s", flush=True)
    augment = Augment(train_images, mean, std, flip=True)
    test_inputs = normalise(test_images, mean, std)
    model = build("cnn", train_images.shape[1], classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    os.makedirs(args.out, exist_ok=True)
    for epoch in range(args.epochs):
        epoch_started = time.perf_counter()
        lr = 0.5 * args.lr * (1 + math.cos(math.pi * epoch / args.epochs))
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        batches = bake_batches(labels_np, args.batch // 2, rng)
        for iteration, indices in enumerate(batches):
            images = augment(indices, rng)
            labels = train_labels[indices]
            optimizer.zero_grad(set_to_none=True)
            features = model.features(images)
            logits = model.head(features)
            loss = bake_loss(features, logits, labels)
            loss.backward()
            optimizer.step()
            if (iteration + 1) % args.log_period == 0 or iteration + 1 == len(batches):
                print(f"epoch {epoch + 1} iter {iteration + 1}/{len(batches)} loss {loss.item():.4f}", flush=True)
        model.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(test_labels), args.test_batch):
                logits = model.head(model.features(test_inputs[start:start + args.test_batch]))
                correct += int((logits.argmax(1) == test_labels[start:start + args.test_batch]).sum())
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1},
                   os.path.join(args.out, "checkpoint.pth"))
        print(f"epoch {epoch + 1}: test top-1 {100 * correct / len(test_labels):.2f}% | {time.perf_counter() - epoch_started:.1f}s "
              f"(since start {time.perf_counter() - started:.1f}s)", flush=True)


# ------------------------------------------------------------------------------------------------------------ time
def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def time_model(args):
    torch.manual_seed(0)
    model = build(args.model, args.channels, args.classes)
    images = torch.randn(args.batch, args.channels, args.image_size, args.image_size).contiguous(memory_format=CHANNELS_LAST)
    labels = torch.randint(args.classes, (args.batch,))

    def forward():
        model.eval()
        with torch.no_grad():
            model.head(model.features(images))

    def ce_step():
        model.train()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model.head(model.features(images)), labels).backward()

    def bake_step():
        model.train()
        model.zero_grad(set_to_none=True)
        features = model.features(images)
        bake_loss(features, model.head(features), labels).backward()

    with torch.no_grad():
        fixed_features = model.features(images)
        fixed_logits = model.head(fixed_features)
    logits = fixed_logits.detach().clone().requires_grad_(True)

    def soft_targets_kd():
        logits.grad = None
        kd(logits, bake_targets(fixed_features, logits)).backward()

    steps = [forward, ce_step, bake_step, soft_targets_kd]
    for _ in range(args.warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(args.iterations):
        for step, measured in zip(steps, times):
            start = time.perf_counter()
            step()
            measured.append(1000 * (time.perf_counter() - start))
    f, ce, bake, extra = (median(t) for t in times)
    print(f"twin time: {args.model}, batch {args.batch} of {args.channels}x{args.image_size}x{args.image_size}, {args.classes} classes, "
          f"channels_last; median of {args.iterations} after {args.warmup} warm-up, {torch.get_num_threads()} threads, PyTorch {torch.__version__}")
    print(f"  forward (eval, no grad)            {f:10.2f} ms")
    print(f"  forward + backward (CE)            {ce:10.2f} ms")
    print(f"  forward + backward (BAKE)          {bake:10.2f} ms")
    print(f"  BAKE soft targets + KD (+ backward) {extra:9.2f} ms   {100 * extra / ce:.1f}% of a CE training step")


def leaf_layers(model):
    """The layers `benchmarks/layer-times.fsx` times, in order: Sequential containers opened, the head left out."""
    def opened(module, prefix):
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.Sequential):
                yield from opened(child, path)
            elif name not in ("fc", "linear", "avgpool"):
                yield path, child
    root = model.net if hasattr(model, "net") else model
    return [(name.replace("trunk.", "").replace("layers.", ""), layer) for name, layer in opened(root, "")]


def layer_times(args):
    torch.manual_seed(0)
    model = build(args.model, args.channels, args.classes).eval()
    images = torch.randn(args.batch, args.channels, args.image_size, args.image_size).contiguous(memory_format=CHANNELS_LAST)

    def timed(action):
        for _ in range(3):
            action()
        values = []
        for _ in range(args.iterations):
            start = time.perf_counter()
            action()
            values.append(1000 * (time.perf_counter() - start))
        return sorted(values)[len(values) // 2]

    rows = []
    with torch.no_grad():
        current = images
        for name, layer in leaf_layers(model):
            rows.append((name, timed(lambda: layer(current.clone()))))
            current = layer(current.clone())
        rows.append(("pool + head", timed(lambda: model.head(F.adaptive_avg_pool2d(current, 1).flatten(1)))))
        clone = timed(lambda: images.clone())
        whole = timed(lambda: model.head(model.features(images)))
    print(f"twin layers: {args.model}, batch {args.batch} of {args.channels}x{args.image_size}x{args.image_size}, {args.classes} classes, "
          f"{torch.get_num_threads()} threads, median of {args.iterations} (ms; each layer's row includes one clone of its input, "
          f"{clone:.2f} ms for the image batch)")
    for name, ms in rows:
        print(f"  {name:<22} {ms:8.2f}")
    print(f"  {'sum of rows':<22} {sum(ms for _, ms in rows):8.2f}")
    print(f"  {'whole forward':<22} {whole:8.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--per-class", type=int, default=0)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--test-batch", type=int, default=500)
    t.add_argument("--lr", type=float, default=0.1)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--log-period", type=int, default=10)
    for command, iterations in (("time", 20), ("layers", 30)):
        m = sub.add_parser(command)
        m.add_argument("--model", required=True)
        m.add_argument("--batch", type=int, required=True)
        m.add_argument("--channels", type=int, default=3)
        m.add_argument("--image-size", type=int, default=32)
        m.add_argument("--classes", type=int, default=10)
        m.add_argument("--iterations", type=int, default=iterations)
        m.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    {"train": train, "time": time_model, "layers": layer_times}[args.command](args)


if __name__ == "__main__":
    main()
