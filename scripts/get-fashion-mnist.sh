#!/usr/bin/env bash
# Puts the full Fashion-MNIST (60,000 train / 10,000 test, MIT licence) into Bake's dataset cache from Debian's
# `dataset-fashion-mnist` package, for machines that reach the Debian archive but not the dataset's own server.
# Afterwards `bake data info fashion-mnist` and `Datasets.load ("fashion-mnist", None)` find it, exactly as after
# `bake data fetch fashion-mnist`.
#
# Usage: scripts/get-fashion-mnist.sh [CACHE_DIR]
#   CACHE_DIR defaults to $BAKE_DATA, else $XDG_CACHE_HOME/bake/datasets, else ~/.cache/bake/datasets.
# Needs apt-get (run `apt-get update` once first on a fresh machine) and dpkg-deb; no root needed.
set -euo pipefail
cache=${1:-${BAKE_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/bake/datasets}}
target="$cache/fashion-mnist"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && apt-get download dataset-fashion-mnist >/dev/null && dpkg-deb -x dataset-fashion-mnist_*.deb x)
source_dir="$work/x/usr/share/datasets/fashion-mnist"

# SHA-256 of the decompressed IDX files, the same values `bake data fetch` checks (Debian recompressed the .gz
# files, so the published MD5s of the .gz files do not apply to these).
declare -A expected=(
  [train-images-idx3-ubyte.gz]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
  [train-labels-idx1-ubyte.gz]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
  [t10k-images-idx3-ubyte.gz]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
  [t10k-labels-idx1-ubyte.gz]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
)
for name in "${!expected[@]}"; do
  actual=$(gzip -dc "$source_dir/$name" | sha256sum | cut -c1-64)
  if [[ "$actual" != "${expected[$name]}" ]]; then
    echo "get-fashion-mnist: $name: content SHA-256 $actual, expected ${expected[$name]}" >&2
    exit 1
  fi
done

mkdir -p "$target"
cp "$source_dir"/*.gz "$target/"
cp "$work/x/usr/share/doc/dataset-fashion-mnist/copyright" "$target/LICENSE"
echo "Fashion-MNIST (verified) in $target"
ls -l "$target"
