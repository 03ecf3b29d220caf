#!/usr/bin/env bash
# Fault injection for Bake's run directories: trains a tiny model with the CLI as a child process, kills it with
# SIGKILL at random moments (startup, mid-epoch, inside checkpoint and summary writes) KILLS times, resuming each
# time by running the same command again; then checks that the final summary.csv equals an uninterrupted run's in
# every column but `seconds`, that every checkpoint left loads (`bake eval`), that no temporary file remains, and
# that a second training on a directory in use is refused. Prints the figures docs/reliability.md quotes.
#
#   scripts/fault-injection.sh [KILLS]          (default 30; BAKE=path/to/bake, else the Release build)
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-30}
bake=${BAKE:-src/Bake.Cli/bin/Release/net10.0/linux-x64/bake}
[ -x "$bake" ] || { echo "fault-injection: no bake at $bake (dotnet build -c Release first, or set BAKE)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=PASSIVE
job=(train --set MODEL.TYPE=cnn-tiny --set TRAIN.PER_CLASS=60 --set TRAIN.BATCH_SIZE=16 --set OPTIM.MAX_EPOCH=6
     --set LOG_PERIOD=2 --set DATA_LOADER.NUM_WORKERS=1 --set TEST.BATCH_SIZE=500)
strip() { sed 's/,[^,]*$//' "$1/summary.csv"; }

echo "== uninterrupted reference run"
start=$(date +%s.%N)
"$bake" "${job[@]}" --out "$work/reference" > "$work/reference.log" 2>&1
reference_seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

# Rounds: a run directory is killed until its run finishes (each kill followed by the same command, which resumes
# it), then compared with the reference; new rounds start until KILLS kills have hit a running training.
echo "== $kills kills of a running training at random moments (0.3 s to the reference run's ${reference_seconds} s)"
survived=0; rounds=0; checkpoints=0; attempts=0
while [ "$survived" -lt "$kills" ]; do
  rounds=$((rounds + 1)); run="$work/round-$rounds"
  while [ "$survived" -lt "$kills" ]; do
    attempts=$((attempts + 1))
    "$bake" "${job[@]}" --out "$run" > "$work/attempt-$attempts.log" 2>&1 &
    pid=$!
    sleep "$(awk -v s="$RANDOM" -v t="$reference_seconds" 'BEGIN { srand(s); printf "%.2f", 0.3 + rand() * (t - 0.3) }')"
    if kill -9 "$pid" 2>/dev/null; then survived=$((survived + 1)); wait "$pid" 2>/dev/null || true
    else wait "$pid" 2>/dev/null || true; break; fi
    # Whatever was killed, the directory stays usable: its last checkpoint (if any) loads.
    if [ -f "$run/checkpoints/last.json" ]; then
      "$bake" eval --checkpoint "$run" --workers 0 > "$work/eval.log" 2>&1 \
        || { echo "FAIL: last checkpoint unloadable after kill $survived" >&2; cat "$work/eval.log" >&2; exit 1; }
    fi
  done
  "$bake" "${job[@]}" --out "$run" > "$work/final-$rounds.log" 2>&1
  if ! diff <(strip "$work/reference") <(strip "$run") > "$work/diff.txt"; then
    echo "FAIL: round $rounds: the resumed summary differs from the uninterrupted one:" >&2; cat "$work/diff.txt" >&2; exit 1
  fi
  for c in "$run"/checkpoints/*/; do
    "$bake" eval --checkpoint "$c" --workers 0 > /dev/null 2>&1 || { echo "FAIL: checkpoint $c does not load" >&2; exit 1; }
    checkpoints=$((checkpoints + 1))
  done
  leftovers=$(find "$run" -name '.*.tmp' | wc -l)
  [ "$leftovers" = 0 ] || { echo "FAIL: $leftovers temporary files left" >&2; find "$run" -name '.*.tmp' >&2; exit 1; }
done

echo "== two trainings on one directory"
"$bake" "${job[@]}" --set OPTIM.MAX_EPOCH=6 --out "$work/shared" > "$work/first.log" 2>&1 &
first=$!
for _ in $(seq 1 100); do [ -f "$work/shared/.bake.lock.json" ] && break; sleep 0.1; done
set +e; "$bake" "${job[@]}" --set OPTIM.MAX_EPOCH=6 --out "$work/shared" > "$work/second.log" 2>&1; second=$?; set -e
wait "$first"
grep -q "is in use by another training" "$work/second.log" && [ "$second" = 2 ] \
  || { echo "FAIL: the second training was not refused (exit $second):" >&2; cat "$work/second.log" >&2; exit 1; }

echo "kills survived: $survived in $rounds run(s) ($attempts starts); every resumed summary = the uninterrupted one (every column but seconds); $checkpoints checkpoints left, all load; 0 temporary files; a second training on a directory in use refused (exit 2)"
