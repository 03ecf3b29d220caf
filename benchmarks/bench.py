#!/usr/bin/python3
"""Bake against its PyTorch twin (benchmarks/twin.py), side by side: medians and ratios (docs/performance.md).

    dotnet build Bake.sln -c Release
    /usr/bin/python3 benchmarks/bench.py [--images DIR] [--repeats 3] [--jobs default,images,steps,loader]

Jobs (each run alternately: Bake, twin, Bake, twin, ...):
  default  the default job end to end (`bake train`, 8 epochs on the embedded Fashion-MNIST subset) vs the twin's loop;
           wall time of the whole process and its peak resident memory.
  images   the same job on an ImageFolder of 3x32x32 images (--images, or $BAKE_BENCH_IMAGES; e.g. CIFAR-10 as JPEG
           files, train/<class>/*.jpg and test/<class>/*.jpg), 800 images per class, 2 epochs; skipped without a folder.
  steps    per-step forward / CE step / BAKE step (`bake time` vs `twin.py time`) for the issue's models and shapes,
           and the CIFAR ResNets at TinyImageNet-32's shape (200 classes).
  loader   `bake data bench`: loader images/s against the training step's (Bake only), for every shipped format: the
           embedded IDX subset, the full Fashion-MNIST IDX (when in the cache), the JPEG folder (--images), CIFAR-10's
           pickle layout written from it (benchmarks/cifar-pickle.py) and TinyImageNet-32 (--tinyimagenet, with
           resnet20's step).
The twin needs Debian's python3-torch (and python3-torchvision for resnet18); without it the twin is skipped with the
reason printed and Bake's numbers are still shown. Run on an idle machine; the load average is printed.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWIN = os.path.join(ROOT, "benchmarks", "twin.py")
PYTHON = "/usr/bin/python3"

# (model, batch, channels, side, classes, timed iterations): the rows of issue 12.
STEP_ROWS = [
    ("cnn", 128, 1, 28, 10, 20),
    ("cnn", 128, 3, 32, 10, 20),
    ("resnet18", 128, 3, 32, 100, 10),
    ("resnet18", 32, 3, 224, 1000, 5),
    ("preact-resnet18", 32, 3, 32, 100, 10),
    # The CIFAR ResNets at TinyImageNet-32's shape (200 classes), the study's candidates.
    ("resnet20", 128, 3, 32, 200, 5),
    ("resnet32", 128, 3, 32, 200, 5),
    ("resnet56", 128, 3, 32, 200, 3),
    ("resnet110", 32, 3, 32, 200, 3),
    ("resnet8x4", 128, 3, 32, 200, 3),
    ("resnet32x4", 32, 3, 32, 200, 3),
]


def run(command, cwd=None):
    """Runs a command; returns (seconds, peak resident MB, stdout). Fails loudly on a non-zero exit."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {code}:\n{output[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, output


def twin_available():
    probe = subprocess.run([PYTHON, "-c", "import torch, numpy; print(torch.__version__)"], capture_output=True, text=True) \
        if os.path.exists(PYTHON) else None
    if probe is None or probe.returncode != 0:
        return None, f"{PYTHON} cannot import torch (apt-get install python3-torch python3-torchvision)"
    return probe.stdout.strip(), None


def load():
    return " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "n/a"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def train_job(name, bake, bake_args, twin_args, repeats, twin):
    rows = {"bake": [], "twin": []}
    for r in range(repeats):
        for side in ("bake", "twin") if twin else ("bake",):
            out = tempfile.mkdtemp(prefix=f"bench-{side}-")
            try:
                command = [bake, "train", "--out", out] + bake_args if side == "bake" else [PYTHON, TWIN, "train", "--out", out] + twin_args
                seconds, rss, output = run(command, cwd=ROOT)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            # Training + evaluation alone: the sum of the per-epoch seconds both sides print ("epoch k: ... | 12.3s").
            epochs = sum(float(m) for m in re.findall(r"^epoch \d+: .*\| ([\d.]+)s", output, re.MULTILINE))
            rows[side].append((seconds, rss, epochs))
            final = [line for line in output.splitlines() if line.startswith("final epoch") or "test top-1" in line]
            print(f"  {name} run {r + 1} {side}: {seconds:.1f} s (epochs {epochs:.1f} s), peak RSS {rss:.0f} MB (load {load()}); "
                  f"{final[-1] if final else ''}", flush=True)
    summary = lambda runs: (statistics.median(s for s, _, _ in runs), max(m for _, m, _ in runs), statistics.median(e for _, _, e in runs))
    return summary(rows["bake"]), (summary(rows["twin"]) if twin else (None, None, None))


STEP_LABELS = [("forward", r"forward \(eval, no grad\)\s+([\d.]+) ms"), ("CE step", r"forward \+ backward \(CE\)\s+([\d.]+) ms"),
               ("BAKE step", r"forward \+ backward \(BAKE\)\s+([\d.]+) ms"), ("BAKE extra", r"soft targets \+ KD \(\+ backward\)\s+([\d.]+) ms")]


def parse_steps(output):
    values = {}
    for label, pattern in STEP_LABELS:
        match = re.search(pattern, output)
        values[label] = float(match.group(1)) if match else None
    return values


def steps_job(bake, repeats, twin, rows):
    results = []
    for model, batch, channels, side, classes, iterations in rows:
        shape = ["--model", model, "--batch", str(batch), "--channels", str(channels), "--image-size", str(side), "--classes", str(classes),
                 "--iterations", str(iterations)]
        runs = {"bake": [], "twin": []}
        for _ in range(repeats):
            runs["bake"].append(parse_steps(run([bake, "time"] + shape)[2]))
            if twin:
                runs["twin"].append(parse_steps(run([PYTHON, TWIN, "time"] + shape)[2]))
        med = lambda side, label: statistics.median(r[label] for r in runs[side]) if runs[side] else None
        row = {"name": f"{model} {channels}x{side}x{side} b{batch} ({classes} classes)", "spread": {}}
        for label, _ in STEP_LABELS:
            row[label] = (med("bake", label), med("twin", label))
            # The ratio of each alternating pair of processes: its range shows how much one cell can move between
            # processes on the same machine, which a single pair cannot.
            pairs = sorted(b[label] / t[label] for b, t in zip(runs["bake"], runs["twin"]) if b[label] and t[label])
            row["spread"][label] = (pairs[0], pairs[-1]) if len(pairs) > 1 else None
        results.append(row)
        print(f"  {row['name']}: " + ", ".join(f"{label} {b:.1f} / {t:.1f} ms" if t else f"{label} {b:.1f} ms"
                                                for label, (b, t) in ((l, row[l]) for l, _ in STEP_LABELS)) + f" (load {load()})", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bake", default=os.path.join(ROOT, "src", "Bake.Cli", "bin", "Release", "net10.0", "linux-x64", "bake"))
    parser.add_argument("--images", default=os.environ.get("BAKE_BENCH_IMAGES"))
    parser.add_argument("--tinyimagenet", default=os.environ.get("TINYIMAGENET32"), help="TinyImageNet-32 folder: a loader row with resnet20's step")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side of each end-to-end job (default 3)")
    parser.add_argument("--image-repeats", type=int, default=2, help="runs per side of the 3x32x32 images job (default 2)")
    parser.add_argument("--step-repeats", type=int, default=5,
                        help="bake time / twin time processes per side and row, alternating; cells are medians over them (default 5)")
    parser.add_argument("--jobs", default="default,images,steps,loader")
    parser.add_argument("--no-twin", action="store_true", help="Bake only (e.g. --bake pointing at an older build, for before/after)")
    parser.add_argument("--rows", default=None, help="time only these step rows: comma-separated indices into the table (0 = cnn 1x28)")
    args = parser.parse_args()
    jobs = args.jobs.split(",")
    if not os.path.exists(args.bake):
        sys.exit(f"bench: {args.bake} not found: run `dotnet build Bake.sln -c Release` first")
    version, reason = twin_available() if not args.no_twin else (None, "--no-twin")
    if reason:
        print(f"bench: twin skipped: {reason}; Bake's numbers only")
    print(f"bench: {os.cpu_count()} cores, load {load()}, PyTorch {version or 'absent'}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    twin = reason is None
    summary = []
    if "default" in jobs:
        b, t = train_job("default job", args.bake, [], ["--data", os.path.join(ROOT, "data", "fashion-mnist-subset")], args.repeats, twin)
        summary.append(("default job, 8 epochs, whole process (s)", b, t))
    if "images" in jobs:
        if args.images and os.path.isdir(os.path.join(args.images, "train")):
            bake_args = ["--set", f"TRAIN.DATASET={os.path.abspath(args.images)}", "--set", "TRAIN.PER_CLASS=800", "--set", "OPTIM.MAX_EPOCH=2"]
            b, t = train_job("3x32 images", args.bake, bake_args, ["--data", args.images, "--per-class", "800", "--epochs", "2"], args.image_repeats, twin)
            summary.append(("default job on 3x32x32 images, 800/class, 2 epochs (s)", b, t))
        else:
            print("bench: images job skipped: no folder with train/ and test/ (--images or $BAKE_BENCH_IMAGES)")
    rows = [STEP_ROWS[int(i)] for i in args.rows.split(",")] if args.rows else STEP_ROWS
    steps = steps_job(args.bake, args.step_repeats, twin, rows) if "steps" in jobs else []
    loader = []
    if "loader" in jobs:
        sources = [["embedded"]]
        # The full IDX set when it is in the cache (`bake data fetch fashion-mnist` or scripts/get-fashion-mnist.sh).
        cached = subprocess.run([args.bake, "data", "info", "fashion-mnist"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        sources += [["fashion-mnist"]] if cached else []
        if not cached:
            print("bench: loader row for the full Fashion-MNIST skipped: not in the cache (scripts/get-fashion-mnist.sh)")
        if args.images and os.path.isdir(args.images):
            sources.append([os.path.abspath(args.images)])
            # CIFAR-10's python (pickle) layout, written from the same images.
            pickled = os.path.join(tempfile.gettempdir(), "bake-bench-cifar-10-batches-py")
            if not os.path.exists(os.path.join(pickled, "batches.meta")):
                subprocess.run([PYTHON, os.path.join(ROOT, "benchmarks", "cifar-pickle.py"), "--images", args.images, "--out", pickled], check=True)
            sources.append([pickled])
        if args.tinyimagenet and os.path.isdir(args.tinyimagenet):
            sources.append([os.path.abspath(args.tinyimagenet), "--model", "resnet20"])
        for source in sources:
            loader.append((source[0], run([args.bake, "data", "bench"] + source + ["--batches", "40", "--workers", "0,2"])[2]))

    print(f"\n## Results (medians; ratio = Bake / twin, below 1 = Bake faster); load at the end {load()}\n")
    if summary:
        print("| job | Bake | twin | ratio | epochs only (train + eval): Bake / twin, ratio | Bake peak RSS | twin peak RSS |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, (bs, bm, be), (ts, tm, te) in summary:
            print(f"| {name} | {bs:.1f} | {ts:.1f} | {ratio(bs, ts)} | {be:.1f} / {te:.1f} ({ratio(be, te)}) | {bm:.0f} MB | {tm:.0f} MB |" if ts
                  else f"| {name} | {bs:.1f} | - | - | {be:.1f} | {bm:.0f} MB | - |")
    if steps:
        print("\n| model, input | forward | CE step | BAKE step | BAKE's own work, % of CE step |")
        print("|---|---:|---:|---:|---:|")
        for row in steps:
            cells = []
            for label in ("forward", "CE step", "BAKE step"):
                b, t = row[label]
                spread = row["spread"][label]
                cells.append((f"{b:.1f} / {t:.1f} ms ({ratio(b, t)}" + (f"; pairs {spread[0]:.2f}-{spread[1]:.2f}" if spread else "") + ")")
                             if t else f"{b:.1f} ms")
            (be, te), (bc, tc) = row["BAKE extra"], row["CE step"]
            overhead = f"{100 * be / bc:.1f}% / {100 * te / tc:.1f}%" if te else f"{100 * be / bc:.1f}%"
            print(f"| {row['name']} | " + " | ".join(cells) + f" | {overhead} |")
        print("\n(step cells: Bake / twin ms, medians over the processes (ratio of the medians; range of the ratios of the"
              " alternating process pairs))")
    for source, output in loader:
        print(f"\n`bake data bench {source}`:\n" + "\n".join("    " + line for line in output.strip().splitlines()[-12:]))


if __name__ == "__main__":
    main()
