#!/usr/bin/env bash
# Rebuilds data/fashion-mnist-subset/: the class-balanced Fashion-MNIST subset that Bake embeds as its default
# dataset (`bake train` with no dataset, `Datasets.embedded ()`).
#
# Source: Debian's `dataset-fashion-mnist` package (Fashion-MNIST by Zalando SE, MIT/Expat licence), fetched with
# apt-get download (no root or install needed). Selection: in file order, the first TRAIN_PER_CLASS images of each
# class from the official training file and the first TEST_PER_CLASS of each class from the official test file, so
# the result is deterministic. Output: IDX files, gzip'd with a zero timestamp (byte-identical on every run).
#
# Usage: scripts/make-embedded-dataset.sh [TRAIN_PER_CLASS=800] [TEST_PER_CLASS=200]
set -euo pipefail
cd "$(dirname "$0")/.."
train_per_class=${1:-800}
test_per_class=${2:-200}
out=data/fashion-mnist-subset
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && apt-get download dataset-fashion-mnist >/dev/null && dpkg-deb -x dataset-fashion-mnist_*.deb x)
source_dir="$work/x/usr/share/datasets/fashion-mnist"
mkdir -p "$out"

python3 - "$source_dir" "$out" "$train_per_class" "$test_per_class" <<'PY'
import gzip, struct, sys, os
source, out, train_per_class, test_per_class = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def read(name):
    with gzip.open(os.path.join(source, name), "rb") as f:
        return f.read()

def write(name, data):
    # mtime=0 and no file name in the header: the same bytes on every run.
    with open(os.path.join(out, name), "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(data)

for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
    images = read(prefix + "-images-idx3-ubyte.gz")
    labels = read(prefix + "-labels-idx1-ubyte.gz")
    magic, n, rows, cols = struct.unpack(">IIII", images[:16])
    assert magic == 0x803 and struct.unpack(">II", labels[:8]) == (0x801, n)
    size = rows * cols
    taken, chosen = {}, []
    for i in range(n):
        label = labels[8 + i]
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            chosen.append(i)
    assert all(taken[c] == per_class for c in range(10)), taken
    write(prefix + "-images-idx3-ubyte.gz",
          struct.pack(">IIII", 0x803, len(chosen), rows, cols) + b"".join(images[16 + i * size:16 + (i + 1) * size] for i in chosen))
    write(prefix + "-labels-idx1-ubyte.gz",
          struct.pack(">II", 0x801, len(chosen)) + bytes(labels[8 + i] for i in chosen))
    print(f"{prefix}: {len(chosen)} images ({per_class} per class)")
PY
cp "$work/x/usr/share/doc/dataset-fashion-mnist/copyright" "$out/LICENSE"
ls -l "$out"
