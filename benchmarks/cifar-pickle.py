#!/usr/bin/python3
"""Writes CIFAR-10's python release layout (cifar-10-batches-py) from an ImageFolder of 3x32x32 images, so the
loader benchmark can time Bake's pickle reader without the network.

    /usr/bin/python3 benchmarks/cifar-pickle.py --images <folder with train/<class>/*, test/<class>/*> --out DIR

The files are what the official release holds: data_batch_1..5 (10,000 images each; the last takes the remainder)
and test_batch, each a pickled dict with b'data' (uint8 N x 3072, channel-planar rows: 1,024 red, 1,024 green,
1,024 blue) and b'labels' (a list of ints), plus batches.meta with b'label_names'. The official files were written by
Python 2 (protocol 2, byte strings); these are written with protocol 4, whose byte strings Bake reads the same way.
The pixels are the JPEGs' decoded pixels, not CIFAR-10's originals: this is for timing, not for training results.
"""
import argparse
import os
import pickle

import numpy as np
from PIL import Image


def read_split(folder, classes):
    data, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted(os.listdir(os.path.join(folder, name))):
            with Image.open(os.path.join(folder, name, file)) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
            if pixels.shape != (32, 32, 3):
                raise SystemExit(f"cifar-pickle: {os.path.join(folder, name, file)} is {pixels.shape}, expected 32x32 RGB")
            data.append(pixels.transpose(2, 0, 1).reshape(-1))
            labels.append(label)
    return np.stack(data), labels


def write(path, value):
    temporary = path + ".tmp"
    with open(temporary, "wb") as stream:
        pickle.dump(value, stream, protocol=4)
    os.replace(temporary, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    classes = sorted(os.listdir(os.path.join(args.images, "train")))
    os.makedirs(args.out, exist_ok=True)
    train, train_labels = read_split(os.path.join(args.images, "train"), classes)
    # A shuffle with a fixed seed, as the official batches are not sorted by class.
    order = np.random.default_rng(0).permutation(len(train_labels))
    train, train_labels = train[order], [train_labels[i] for i in order]
    size = 10000
    for batch in range(5):
        stop = len(train_labels) if batch == 4 else (batch + 1) * size
        write(os.path.join(args.out, f"data_batch_{batch + 1}"),
              {b"data": train[batch * size:stop], b"labels": train_labels[batch * size:stop]})
    test, test_labels = read_split(os.path.join(args.images, "test"), classes)
    write(os.path.join(args.out, "test_batch"), {b"data": test, b"labels": test_labels})
    write(os.path.join(args.out, "batches.meta"), {b"label_names": [name.encode() for name in classes]})
    print(f"cifar-pickle: {len(train_labels)} train / {len(test_labels)} test images of {len(classes)} classes in {args.out}")


if __name__ == "__main__":
    main()
