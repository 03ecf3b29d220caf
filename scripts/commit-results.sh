#!/usr/bin/env bash
# Stages the files of the study's finished runs (config.yaml, summary.csv, robustness.json; a run is finished when
# robustness.json exists), the wall-time logs and the generated report, for a commit. Runs in progress are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
for run in results/*/*/; do
  if [ -f "$run/robustness.json" ]; then
    git add -f "$run/config.yaml" "$run/summary.csv" "$run/robustness.json"
  fi
done
git add -f results/*/wall-time.tsv 2>/dev/null || true
git add docs/results.md docs/figures 2>/dev/null || true
