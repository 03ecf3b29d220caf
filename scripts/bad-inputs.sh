#!/usr/bin/env bash
# A corpus of bad inputs, generated here (small), run through every verb that reads files. Every case must end with
# exit 1 or 2, one message that names the file (or key) and says what is wrong, no stack trace and no abort, and
# leave nothing in a run directory. Prints the cases per verb that docs/reliability.md quotes.
#
#   scripts/bad-inputs.sh           (BAKE=path/to/bake, else the Release build)
set -uo pipefail
cd "$(dirname "$0")/.."
bake=${BAKE:-src/Bake.Cli/bin/Release/net10.0/linux-x64/bake}
[ -x "$bake" ] || { echo "bad-inputs: no bake at $bake (dotnet build -c Release first, or set BAKE)" >&2; exit 2; }
c=$(mktemp -d)
trap 'rm -rf "$c"' EXIT
export OMP_WAIT_POLICY=PASSIVE
failures=0
declare -A count

# case VERB EXPECT-IN-MESSAGE ARGS...: runs bake ARGS, checks exit 1/2, the message, no trace, no run directory.
case_() {
  local verb=$1 expect=$2; shift 2
  local out="$c/out.txt" code
  "$bake" "$@" > "$out" 2>&1; code=$?
  count[$verb]=$(( ${count[$verb]:-0} + 1 ))
  if [ "$code" != 1 ] && [ "$code" != 2 ]; then echo "FAIL ($verb, exit $code): bake $*" >&2; tail -3 "$out" >&2; failures=$((failures + 1)); return; fi
  if grep -q -E '^\s+at |Unhandled exception' "$out"; then echo "FAIL ($verb, stack trace): bake $*" >&2; failures=$((failures + 1)); return; fi
  if ! grep -q -F -- "$expect" "$out"; then echo "FAIL ($verb, message lacks '$expect'): bake $*" >&2; cat "$out" >&2; failures=$((failures + 1)); return; fi
  if [ -e "$c/run" ]; then echo "FAIL ($verb): the run directory was created: bake $*" >&2; rm -rf "$c/run"; failures=$((failures + 1)); fi
}

# ---- configs (train)
printf 'TRAIN:\n  OMEGA: [1, 2\n' > "$c/broken.yaml"
printf 'TRAIN:\n  OMEGA: 0.3\n---\nTRAIN:\n  OMEGA: 0.9\n' > "$c/two-docs.yaml"
printf 'a: &a [x, x, x]\nb: [*a, *a, *a]\n' > "$c/aliases.yaml"
printf 'TRAIN:\n  OMEGAA: 0.3\n' > "$c/unknown-key.yaml"
printf 'TRAIN:\n  BATCH_SIZE: many\n' > "$c/wrong-type.yaml"
printf 'OPTIM:\n  BASE_LR:\n    deep: 1\n' > "$c/nested.yaml"
head -c 2000000 /dev/zero | tr '\0' '#' > "$c/huge.yaml"
printf '\xff\xfe\x00garbage' > "$c/binary.yaml"
for f in broken two-docs aliases unknown-key wrong-type nested huge binary; do case_ train "$f.yaml" train --config "$c/$f.yaml" --out "$c/run"; done
case_ train "is a directory" train --config "$c" --out "$c/run"
case_ train "does not exist" train --config "$c/none.yaml" --out "$c/run"
for s in OPTIM.BASE_LR=1e39 OPTIM.BASE_LR=-1 DATA.FORMAT=jpeg METHOD.NAME=bogus TRAIN.BATCH_SIZE=0 DEVICE=cuda DEVICE=tpu TRAIN.OMEGA=1; do
  case_ train "${s%%=*}" train --set "$s" --set TRAIN.PER_CLASS=5 --set OPTIM.MAX_EPOCH=1 --out "$c/run"
done
case_ train "OUT_DIR is empty" train --out ''

# ---- datasets (data info, train on a folder)
mkdir -p "$c/idx-truncated" "$c/idx-labels" "$c/gz-garbage" "$c/cifar-garbage" "$c/pickle-attack" "$c/pickle-huge" "$c/images/train/a" "$c/images/test/a"
printf '\x00\x00\x08\x03\x00\x00\x00\x05\x00\x00\x00\x1c\x00\x00\x00\x1c' > "$c/idx-truncated/train-images-idx3-ubyte"
cp "$c/idx-truncated/train-images-idx3-ubyte" "$c/idx-truncated/train-labels-idx1-ubyte"
cp "$c/idx-truncated/train-images-idx3-ubyte" "$c/idx-truncated/t10k-images-idx3-ubyte"
cp "$c/idx-truncated/train-images-idx3-ubyte" "$c/idx-truncated/t10k-labels-idx1-ubyte"
printf 'this is not gzip' > "$c/gz-garbage/train-images-idx3-ubyte.gz"
for n in 1 2 3 4 5; do head -c 3000 /dev/urandom > "$c/cifar-garbage/data_batch_$n.bin"; done
head -c 3000 /dev/urandom > "$c/cifar-garbage/test_batch.bin"
# A pickle that asks to call os.system: the safe unpickler must refuse the global.
printf '\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.' > "$c/pickle-attack/data_batch_1"
cp "$c/pickle-attack/data_batch_1" "$c/pickle-attack/test_batch"
printf '\x80\x03B\xff\xff\xff\x7f' > "$c/pickle-huge/data_batch_1"; cp "$c/pickle-huge/data_batch_1" "$c/pickle-huge/test_batch"
printf 'not an image' > "$c/images/train/a/x.png"; printf 'not an image' > "$c/images/test/a/y.png"
for d in idx-truncated gz-garbage cifar-garbage pickle-attack pickle-huge images; do
  case_ data "$d" data info "$c/$d"
  case_ train "$d" train --set TRAIN.DATASET="$c/$d" --set OPTIM.MAX_EPOCH=1 --out "$c/run"
done
case_ data "not found" data info "$c/no-such-folder"

# ---- predict (checkpoints and images)
mkdir -p "$c/not-a-checkpoint/checkpoints"
printf '{"folder": ' > "$c/not-a-checkpoint/checkpoints/last.json"
case_ predict "last.json" predict --checkpoint "$c/not-a-checkpoint" "$c/images/train/a/x.png"
case_ predict "no Bake checkpoint" predict --checkpoint "$c" "$c/images/train/a/x.png"
# A real tiny checkpoint, then garbage around it.
"$bake" train --set MODEL.TYPE=cnn-tiny --set TRAIN.PER_CLASS=5 --set OPTIM.MAX_EPOCH=1 --set LOGGING.TENSORBOARD=False --out "$c/good" > /dev/null 2>&1
case_ predict "x.png" predict --checkpoint "$c/good" "$c/images/train/a/x.png"
case_ predict "is a directory" predict --checkpoint "$c/good" "$c/images"
case_ predict "not found" predict --checkpoint "$c/good" "$c/none.png"
python3 - "$c/huge.png" <<'PY'
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
case_ predict "huge.png" predict --checkpoint "$c/good" "$c/huge.png"
cp -r "$c/good" "$c/bad-state"; state=$(ls -d "$c"/bad-state/checkpoints/epoch_*/ | head -1)
printf '{"format": "bake-checkpoint-1"}' > "$state/state.json"
case_ eval "state.json" eval --checkpoint "$c/bad-state"
printf 'garbage' > "$state/state.json"
case_ eval "state.json" eval --checkpoint "$c/bad-state"
cp -r "$c/good" "$c/bad-weights"; weights=$(ls -d "$c"/bad-weights/checkpoints/epoch_*/ | head -1)
head -c 100 /dev/urandom > "$weights/model.safetensors"
case_ eval "model.safetensors" eval --checkpoint "$c/bad-weights"
case_ export "model.safetensors" export --checkpoint "$c/bad-weights" --format pth --out "$c/w.pth"
case_ eval "does not exist" eval --checkpoint "$c/good" --fgsm 0.1 --out "$c/no-such-folder/r.json"

# ---- targets (matrix files)
printf '1,2\n3,x\n' > "$c/bad.csv"; printf '1,2\n3\n' > "$c/ragged.csv"; printf '\x93NUMPY\x01\x00' > "$c/truncated.npy"
printf '1,2\n3,4\n' > "$c/ok.csv"; printf '1,2,3\n' > "$c/one-row.csv"
case_ targets "bad.csv" targets --features "$c/bad.csv" --logits "$c/ok.csv" --out "$c/q.csv"
case_ targets "ragged.csv" targets --features "$c/ragged.csv" --logits "$c/ok.csv" --out "$c/q.csv"
case_ targets "truncated.npy" targets --features "$c/truncated.npy" --logits "$c/ok.csv" --out "$c/q.csv"
case_ targets "one-row.csv" targets --features "$c/ok.csv" --logits "$c/one-row.csv" --out "$c/q.csv"

# ---- plot (summary files)
mkdir -p "$c/plot-run"; printf 'epoch,lr\n1,0.1\n' > "$c/plot-run/summary.csv"
case_ plot "summary.csv" plot "$c/plot-run"
case_ plot "not found" plot "$c/no-such-run"

total=0; line=""
for verb in $(printf '%s\n' "${!count[@]}" | sort); do total=$((total + count[$verb])); line="$line $verb ${count[$verb]},"; done
echo "bad inputs: $total cases (${line%,}); failures: $failures"
[ "$failures" = 0 ]
