#!/usr/bin/env bash
# The issue's scenario at the five published distances: the `paper` preset simulated at each
# true distance with its corrupted metadata (stored distance 30 % long, 10 px position errors),
# reconstructed with a job, and scored against the truth. Prints one Markdown row per distance.
#
# Usage: benchmarks/five_distances.sh OUTDIR [JOB.toml]
#   e.g. benchmarks/five_distances.sh /tmp/five examples/reconstruct_500.toml
# Without JOB.toml the default job runs. Datasets already in OUTDIR are reused. Takes 2-5
# minutes per distance with the 500-epoch job on 2 cores, 7-25 with the default job.
set -euo pipefail
out=${1:?usage: $0 OUTDIR [JOB.toml]}
job=${2:-}
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/autopty
mkdir -p "$out"
# The value on the line of `autopty score`'s table that starts with $1.
pick() { grep -m1 "^$1" "$score" | sed "s/^$1 *//" | awk '{ print $1 }'; }
config=()
if [ -n "$job" ]; then config=(--config "$job"); fi
echo "| true z (m) | epoch-equivalents | distance error | median / p90 position error (px) | magnitude / phase SSIM | wall (s) |"
echo "|---|---|---|---|---|---|"
for z in 0.065 0.1 0.13 0.165 0.2; do
  data="$out/paper_z$z.cxi"
  if [ ! -f "$data" ]; then
    "$bin" simulate --preset paper --distance "$z" -o "$data" > /dev/null
  fi
  start=$(date +%s)
  "$bin" reconstruct "$data" -o "$out/rec_z$z" "${config[@]}" > "$out/rec_z$z.log" 2>&1
  wall=$(( $(date +%s) - start ))
  score="$out/rec_z$z.score"
  "$bin" score "$out/rec_z$z" --truth "$out/paper_z$z.truth.h5" > "$score"
  work=$(grep -m1 '^work:' "$out/rec_z$z.log" | awk '{ print $2 }')
  echo "| $z | ${work:--} | $(pick 'relative distance error') % | $(pick 'median position error (px)') / $(pick 'p90 position error (px)') | $(pick 'magnitude SSIM') / $(pick 'phase SSIM') | $wall |"
done
