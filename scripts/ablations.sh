#!/usr/bin/env bash
# Issue 6's two ablations at about a quarter of the shipped steps, forked from the shipped checkpoints, and
# their evaluation on 32 held-out cases (paired bootstrap intervals, `fashionchameleon compare`).
#   1. reference/garment mismatch: in-context teacher forcing from the teacher, 150 steps, reference = another
#      garment (as shipped) vs the clip's own first frame      -> switch quality (SwitchBench a and b)
#   2. GR-DMD (tau 0.2) vs plain DMD (tau inf) from the teacher-forcing checkpoint, 100 steps -> extrapolation
#      (1,000-frame drift and motion)
# Run state lives in ~/.cache/fashionchameleon/runs/abl-*; re-running the script resumes where it stopped.
# Usage: bash scripts/ablations.sh [train|eval|all]   (outputs: $CKPT/abl-*, reports/ablations/)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CKPT=${CKPT:-$HOME/.cache/fashionchameleon/ablation-checkpoints}
RUNS=${RUNS:-$HOME/.cache/fashionchameleon/runs}
SEEDS=${SEEDS:-500000-500031}
what=${1:-all}
common=(--config tiny --train-seeds 0-2999 --warmup 25 --save-every 25 --sample-every 0)
# v1's teacher-forcing checkpoint left assets/ in session 10 (room for the v2 student milestone under a Space's
# 100 MB); it is taken from git history, byte for byte, when missing
FORCING=${FORCING:-assets/checkpoints/forcing}
if [ ! -f "$FORCING/config.json" ]; then
  FORCING=$CKPT/v1-forcing
  if [ ! -f "$FORCING/config.json" ]; then
    mkdir -p "$FORCING"
    git archive e99cbaec535f20b698eecd520e72e224c78e0efd assets/checkpoints/forcing \
      | tar -x --strip-components=3 -C "$FORCING"
  fi
fi

train() {  # name, extra args...
  local name=$1; shift
  if [ -f "$CKPT/$name/config.json" ]; then echo "$name: exported already"; return; fi
  $PY -m fashionchameleon train "${common[@]}" --run-dir "$RUNS/$name" --out "$CKPT/$name" "$@"
}

if [ "$what" = train ] || [ "$what" = all ]; then
  for ref in other same; do
    train abl-forcing-$ref --stage forcing --init assets/checkpoints/teacher --steps 150 --batch 8 --reference $ref
  done
  for tau in 0.2 inf; do
    train abl-dmd-tau$tau --stage dmd --init "$FORCING" --teacher assets/checkpoints/teacher \
      --steps 100 --batch 4 --lr 5e-5 --critic-lr 1e-4 --tau $tau
  done
fi

evaluate() {  # name, extra eval args...: reports/ablations/<name>.json, written only when the run succeeds
  local name=$1; shift
  [ -f "$out/$name.json" ] && return
  $PY -m fashionchameleon eval --checkpoint "$CKPT/abl-$name" --seeds "$SEEDS" --variants full --threads 1 --json \
    "$@" > "$out/$name.json.tmp" && mv "$out/$name.json.tmp" "$out/$name.json"
}

if [ "$what" = eval ] || [ "$what" = all ]; then
  out=reports/ablations
  mkdir -p $out
  for ref in other same; do
    evaluate forcing-$ref --protocols a,b
  done
  # the long runs dominate: both arms at once, one thread each (2 cores)
  evaluate dmd-tau0.2 --protocols a --long --out $out/dmd-tau0.2 & a=$!
  evaluate dmd-tauinf --protocols a --long --out $out/dmd-tauinf & b=$!
  wait $a && wait $b
  $PY -m fashionchameleon compare $out/forcing-other.json $out/forcing-same.json --json > $out/mismatch.json \
    2> $out/mismatch.txt
  $PY -m fashionchameleon compare $out/dmd-tau0.2.json $out/dmd-tauinf.json --json > $out/gr_dmd.json 2> $out/gr_dmd.txt
fi
