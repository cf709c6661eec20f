#!/usr/bin/env bash
# Issue 17, item 2: the world-v2 pilot that chooses the `tiny` v2 shape (docs/train-tiny.md, "v2 pilot").
#   codec     the shipped codec's PSNR on held-out world-v2 clips (for the record), then a codec trained on
#             world v2 (same latent: 16 channels, 8x; the shipped one never saw textured scenes)
#   teachers  per candidate preset: seconds a training step takes (a few calibration steps), then a teacher
#             trained for TEACHER_SECONDS of that (equal CPU time; the step count is fixed once, so a
#             re-run resumes the same schedule exactly)
#   bench     end-to-end streaming speed of each candidate's shape (the student must hold 20 fps on 2 cores)
#   eval      SwitchBench on held-out world-v2 seeds, the teacher row (bidirectional, protocol a) and the
#             teacher streamed block-causally (`full`); paired intervals between candidates (`compare`)
#   realbench real photos (scripts/make_realbench.py), no ground truth: fidelity, token grid, landing
#   continue  (after the choice; not part of `all`) CHOSEN's teacher trained on from the pilot's hour for
#             CONTINUE_STEPS more (a new cosine schedule at half the rate, as v1's continued teacher)
#   continue-eval  the continued teacher on the pilot's SwitchBench and RealBench, paired with CHOSEN's pilot
#             teacher (compare); the same commands as the pilot's
#   student   (after the choice; not part of `all`) CHOSEN's block-causal student: in-context teacher forcing
#             from its teacher (the continued one once it is exported), then gradient-reweighted DMD (real
#             score: the same teacher), as v1 was trained; then `average`
#   forcing   the student stage's teacher forcing alone (evaluate it before spending DMD's half hour)
#   average   the weights halfway (ALPHA) between the forcing and the GR-DMD checkpoints: $PILOT/average-CHOSEN
#   student-eval  the student: SwitchBench on held-out world-v2 seeds (the rescheduler and its ablations) and
#             on world-v1 seeds paired with the shipped v1 student, RealBench paired with v1, 1,000-frame runs,
#             then bench (run it on an idle machine)
# Everything lives under $PILOT (outside the repository); re-running the script resumes where it stopped.
# Usage: bash scripts/pilot_v2.sh [codec|teachers|bench|eval|realbench|all|continue|continue-eval|student|forcing|average|student-eval]
#        CHOSEN=tiny-v2-a bash scripts/pilot_v2.sh continue; CHOSEN=tiny-v2-a bash scripts/pilot_v2.sh student
#        TEACHER=assets/checkpoints/teacher-v2 TAG=-c2 CONTINUE_STEPS=3000 CHOSEN=tiny-v2-a bash scripts/pilot_v2.sh continue
#        (a new cosine from the committed teacher milestone: runs/teacher-tiny-v2-a-continued-c2)
#        TAG=-c2 CHOSEN=tiny-v2-a bash scripts/pilot_v2.sh continue-eval   (that run paired with teacher-v2)
#        CHOSEN=tiny-v2-a bash scripts/pilot_v2.sh student-eval   (STUDENT=assets/checkpoints/student-v2 on a fresh machine;
#        STUDENT=$PILOT/average-tiny-v2-a: the forcing/DMD average that the student stage writes last)
#        TEACHER=assets/checkpoints/teacher-v2 CHOSEN=tiny-v2-a bash scripts/pilot_v2.sh student   (a fresh machine:
#        the student from the committed teacher milestone)
#        TAG=-f600 FORCING_STEPS=600 CHOSEN=tiny-v2-a bash scripts/pilot_v2.sh student   (a second student run,
#        kept apart by TAG: runs/forcing-tiny-v2-a-f600, student-tiny-v2-a-f600, reports *-f600*)
#        TEACHER=assets/checkpoints/teacher-v2 TAG=-c2-w1mix25 WORLD_MIX=0.25 FORCING_STEPS=200 CHOSEN=tiny-v2-a \
#          bash scripts/pilot_v2.sh forcing   (a quarter of the clips from world 1's portrait crops: v1's people)
#        SMOKE=1 CANDIDATES=tiny-v2-a PILOT=/tmp/pilot-smoke bash scripts/pilot_v2.sh all   (a few steps each)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PILOT=${PILOT:-$HOME/.cache/fashionchameleon/pilot-v2}
CANDIDATES=${CANDIDATES:-"tiny-v2-a tiny-v2-b tiny-v2-c"}
THREADS=${THREADS:-2}
TRAIN_SEEDS=${TRAIN_SEEDS:-0-2999}
EVAL_SEEDS=${EVAL_SEEDS:-500000-500015}
TEACHER_SECONDS=${TEACHER_SECONDS:-3600}
CALIB_STEPS=${CALIB_STEPS:-6}
CALIB_SEEDS=${CALIB_SEEDS:-0-63}
CODEC_STEPS=${CODEC_STEPS:-3000}
CODEC_CLIPS=${CODEC_CLIPS:-1200}
BATCH=${BATCH:-8}
EVAL_CASES=${EVAL_CASES:-16}
LONG_CASES=${LONG_CASES:-4}
LONG_FRAMES=${LONG_FRAMES:-1000}
REAL_ARGS=${REAL_ARGS:-}
BENCH_BLOCKS=${BENCH_BLOCKS:-60}
BENCH_ARGS=${BENCH_ARGS:-}
CHOSEN=${CHOSEN:-}
TAG=${TAG:-}                      # a second student run of CHOSEN: its own run folders, weights and reports
FORCING_STEPS=${FORCING_STEPS:-400}
CONTINUE_STEPS=${CONTINUE_STEPS:-2000}
DMD_STEPS=${DMD_STEPS:-100}
WORLD_MIX=${WORLD_MIX:-0}         # student and continue stages: the share of world-1 clips (train --world-mix)
DMD_BATCH=${DMD_BATCH:-4}
WARMUP=${WARMUP:-50}              # teachers' warm-up steps (the student's forcing uses the trainer's default)
DMD_WARMUP=${DMD_WARMUP:-25}
ANCHOR=${ANCHOR:-0}              # student stage: GR-DMD's regression anchor (train --anchor; 0: plain GR-DMD)
ALPHA=${ALPHA:-0.5}               # `average`: GR-DMD's share of the weights averaged with teacher forcing's
GATE_WEIGHT=${GATE_WEIGHT:-0}     # forcing of a copy-gate preset (tiny-v2-copy): weight of the gate's own loss
FORCING_ARGS=${FORCING_ARGS:-}     # more `train` flags of the forcing stage (e.g. "--gate-only --lr 1e-3 --warmup 25")
CODEC_EVAL_SEEDS=${CODEC_EVAL_SEEDS:-500000-500031}
if [ "${SMOKE:-0}" = 1 ]; then   # proves the commands run: a few steps, a few clips, one case
  TRAIN_SEEDS=0-7; CALIB_SEEDS=0-7; TEACHER_SECONDS=2; CALIB_STEPS=2; CODEC_STEPS=2; CODEC_CLIPS=8; BATCH=2; EVAL_CASES=1
  LONG_CASES=1; LONG_FRAMES=100; FORCING_STEPS=2; DMD_STEPS=2; CONTINUE_STEPS=2; DMD_BATCH=2; WARMUP=1; DMD_WARMUP=1; CODEC_EVAL_SEEDS=500000-500001
  REAL_ARGS="--persons astronaut --garments 2"; BENCH_BLOCKS=32; BENCH_ARGS=--no-teacher
fi
CODEC=${CODEC:-assets/checkpoints/codec-v2}    # the committed world-v2 codec (stage `codec` trains it when absent)
REPORTS=$PILOT/reports
export FASHIONCHAMELEON_RUNS=$PILOT/runs          # latent banks and default run folders go here too
mkdir -p "$REPORTS"
what=${1:-all}
want() { [ "$what" = "$1" ] || [ "$what" = all ]; }

if want codec; then
  if [ ! -f "$REPORTS/codec-v1-on-v2.json" ]; then
    $PY -c "from fashionchameleon.model.codec import load_codec; from fashionchameleon.training.codec_report import codec_report
print(codec_report(load_codec('assets/checkpoints/codec'), '500000-500007', size=(112, 192), version=2))" \
      > "$REPORTS/codec-v1-on-v2.json"
  fi
  if [ -f "$CODEC/codec.safetensors" ]; then echo "codec-v2: trained already"; else
    # the codec is convolutional: one codec (rendered at tiny-v2-a's 112x192) serves every v2 candidate
    $PY -m fashionchameleon train-codec --config tiny-v2-a --steps "$CODEC_STEPS" --bank-clips "$CODEC_CLIPS" \
      --run-dir "$PILOT/runs/codec-v2" --out "$CODEC" --threads "$THREADS" \
      --eval-seeds "$CODEC_EVAL_SEEDS"
  fi
fi

common=(--stage teacher --codec "$CODEC" --train-seeds "$TRAIN_SEEDS" --batch "$BATCH" --threads "$THREADS")
if want teachers; then
  # seconds per step, measured for every candidate first, back to back, so that all of them are timed under
  # the same load (after the first, warm-up, step; in a scratch run folder; on a small bank of CALIB_SEEDS:
  # a step's time does not depend on which clips it reads)
  for c in $CANDIDATES; do
    steps_file=$PILOT/runs/teacher-$c.steps
    [ -f "$steps_file" ] && continue
    rm -rf "$PILOT/runs/calib-$c"
    $PY -m fashionchameleon train "${common[@]}" --train-seeds "$CALIB_SEEDS" --config "$c" --steps 1000 \
      --stop-after "$CALIB_STEPS" --run-dir "$PILOT/runs/calib-$c" --save-every 100000 --sample-every 0
    $PY - "$PILOT/runs/calib-$c/log.jsonl" "$TEACHER_SECONDS" > "$steps_file" <<'EOF'
import json, statistics, sys
secs = [json.loads(line)["sec"] for line in open(sys.argv[1])][1:]
print(max(2, int(float(sys.argv[2]) / statistics.median(secs))))
EOF
    rm -rf "$PILOT/runs/calib-$c"
  done
  for c in $CANDIDATES; do
    echo "$c: $(cat "$PILOT/runs/teacher-$c.steps") teacher steps"
    if [ -f "$PILOT/teacher-$c/config.json" ]; then echo "teacher-$c: exported already"; continue; fi
    $PY -m fashionchameleon train "${common[@]}" --config "$c" --steps "$(cat "$PILOT/runs/teacher-$c.steps")" \
      --warmup "$WARMUP" --run-dir "$PILOT/runs/teacher-$c" \
      --out "$PILOT/teacher-$c" --save-every 50 --sample-every 500
  done
fi

if want bench; then   # speed does not depend on the weights: the teacher's shape is the student's
  for c in $CANDIDATES; do
    $PY -m fashionchameleon bench --checkpoint "$PILOT/teacher-$c" --codec-folder "$CODEC" --config "$c" \
      --blocks "$BENCH_BLOCKS" --threads "$THREADS" $BENCH_ARGS --json > "$REPORTS/bench-$c.json"
  done
fi

if want eval; then
  prev=
  for c in $CANDIDATES; do
    $PY -m fashionchameleon eval --checkpoint "$PILOT/teacher-$c" --codec "$CODEC" --with-teacher \
      --teacher "$PILOT/teacher-$c" --variants full --protocols a --seeds "$EVAL_SEEDS" --cases "$EVAL_CASES" \
      --threads "$THREADS" --out "$REPORTS/switchbench-$c" --json > "$REPORTS/switchbench-$c.json"
    if [ -n "$prev" ]; then   # paired by seed: intervals of (this - previous candidate)
      $PY -m fashionchameleon compare "$REPORTS/switchbench-$prev.json" "$REPORTS/switchbench-$c.json" \
        --variant teacher --json > "$REPORTS/compare-$prev-$c.json"
    fi
    prev=$c
  done
fi

if want realbench; then
  [ -d "$PILOT/realbench" ] || $PY scripts/make_realbench.py "$PILOT/realbench" $REAL_ARGS
  for c in $CANDIDATES; do
    $PY -m fashionchameleon eval --real "$PILOT/realbench" --checkpoint "$PILOT/teacher-$c" --codec "$CODEC" \
      --threads "$THREADS" --out "$REPORTS/realbench-$c" --json > "$REPORTS/realbench-$c.json"
  done
fi
trains_student() { [ "$what" = student ] || [ "$what" = forcing ]; }
if [ "$what" = continue ] || [ "$what" = continue-eval ] || trains_student; then
  [ -n "$CHOSEN" ] || { echo "$what: set CHOSEN to the pilot's choice (e.g. CHOSEN=tiny-v2-a)" >&2; exit 2; }
  teacher=$PILOT/teacher-$CHOSEN
  # the student's teacher: TEACHER if given, else the continued one once exported, else the pilot's
  trains_student && [ -f "$PILOT/teacher-$CHOSEN-continued/config.json" ] && teacher=$PILOT/teacher-$CHOSEN-continued
  [ -n "${TEACHER:-}" ] && teacher=$TEACHER   # continue: the teacher trained on; student: the real score
  [ -f "$teacher/config.json" ] || { echo "$what: no teacher at $teacher (run the teachers stage)" >&2; exit 2; }
fi
if [ "$what" = continue ]; then
  # TEACHER (e.g. the committed milestone assets/checkpoints/teacher-v2) with TAG: a further run, its own folders
  $PY -m fashionchameleon train "${common[@]}" --config "$CHOSEN" --init "$teacher" --steps "$CONTINUE_STEPS" \
    --lr 2e-4 --warmup "$WARMUP" --run-dir "$PILOT/runs/teacher-$CHOSEN-continued$TAG" \
    --out "$PILOT/teacher-$CHOSEN-continued$TAG" --save-every 50 --sample-every 500 --world-mix "$WORLD_MIX"
fi
if [ "$what" = continue-eval ]; then
  t=$PILOT/teacher-$CHOSEN-continued$TAG
  [ -f "$t/config.json" ] || { echo "continue-eval: no continued teacher at $t (run the continue stage)" >&2; exit 2; }
  [ -d "$PILOT/realbench" ] || $PY scripts/make_realbench.py "$PILOT/realbench" $REAL_ARGS
  $PY -m fashionchameleon eval --real "$PILOT/realbench" --checkpoint "$t" --codec "$CODEC" --threads "$THREADS" \
    --out "$REPORTS/realbench-$CHOSEN-continued$TAG" --json > "$REPORTS/realbench-$CHOSEN-continued$TAG.json"
  $PY -m fashionchameleon eval --checkpoint "$t" --codec "$CODEC" --with-teacher --teacher "$t" --variants full \
    --protocols a --seeds "$EVAL_SEEDS" --cases "$EVAL_CASES" --threads "$THREADS" \
    --out "$REPORTS/switchbench-$CHOSEN-continued$TAG" --json > "$REPORTS/switchbench-$CHOSEN-continued$TAG.json"
  # paired by case: the first continued run against the pilot's teacher; a TAGged run against the first
  # continued one (the committed milestone teacher-v2), whose reports are kept in reports/pilot-v2
  base=$CHOSEN; [ -n "$TAG" ] && base=$CHOSEN-continued
  for bench in switchbench realbench; do
    b=$REPORTS/$bench-$base.json; [ -f "$b" ] || b=reports/pilot-v2/$bench-$base.json
    $PY -m fashionchameleon compare "$b" "$REPORTS/$bench-$CHOSEN-continued$TAG.json" \
      --variant teacher --json > "$REPORTS/compare-$bench-$CHOSEN-continued$TAG.json"
  done
fi
if trains_student; then
  echo "$what: teacher $teacher"
  # v1's recipe (MODEL_CARD): regression onto the teacher's trajectories first (a short full schedule: alone it
  # stays blurry), then GR-DMD, which sharpens, at v1's learning rates
  $PY -m fashionchameleon train --stage forcing --config "$CHOSEN" --init "$teacher" --codec "$CODEC" \
    --train-seeds "$TRAIN_SEEDS" --batch "$BATCH" --threads "$THREADS" --steps "$FORCING_STEPS" \
    --run-dir "$PILOT/runs/forcing-$CHOSEN$TAG" --out "$PILOT/forcing-$CHOSEN$TAG" --save-every 25 --sample-every 0 \
    --world-mix "$WORLD_MIX" --gate-weight "$GATE_WEIGHT" $FORCING_ARGS
fi
if [ "$what" = student ]; then
  $PY -m fashionchameleon train --stage dmd --config "$CHOSEN" --init "$PILOT/forcing-$CHOSEN$TAG" --teacher "$teacher" \
    --codec "$CODEC" --train-seeds "$TRAIN_SEEDS" --threads "$THREADS" --steps "$DMD_STEPS" \
    --batch "$DMD_BATCH" --lr 5e-5 --critic-lr 1e-4 --tau 0.2 \
    --warmup "$DMD_WARMUP" --run-dir "$PILOT/runs/dmd-$CHOSEN$TAG" \
    --out "$PILOT/student-$CHOSEN$TAG" --save-every 25 --sample-every 0 --world-mix "$WORLD_MIX" --anchor "$ANCHOR"
fi
if [ "$what" = student ] || [ "$what" = average ]; then
  [ -n "$CHOSEN" ] || { echo "$what: set CHOSEN to the pilot's choice (e.g. CHOSEN=tiny-v2-a)" >&2; exit 2; }
  # the weights halfway between teacher forcing and GR-DMD: DMD lands switches sooner but lets the reference
  # decay; the average keeps most of both (MODEL_CARD, "The average of forcing and GR-DMD"). student-eval: STUDENT=$PILOT/average-...
  $PY -m fashionchameleon average "$PILOT/forcing-$CHOSEN$TAG" "$PILOT/student-$CHOSEN$TAG" --alpha "$ALPHA" \
    --out "$PILOT/average-$CHOSEN$TAG"
fi
if [ "$what" = student-eval ]; then
  [ -n "$CHOSEN" ] || { echo "$what: set CHOSEN to the pilot's choice (e.g. CHOSEN=tiny-v2-a)" >&2; exit 2; }
  s=${STUDENT:-$PILOT/student-$CHOSEN$TAG}   # STUDENT=assets/checkpoints/student-v2: the committed milestone
  [ -f "$s/config.json" ] || { echo "student-eval: no student at $s (run the student stage)" >&2; exit 2; }
  ablations=full,paper,no_refresh,no_withdraw,no_disentangle,naive,restart
  # held-out world-v2 seeds: the rescheduler and its ablations, paired rows (v1 cannot run here: world v2's
  # motions are prompts it does not know)
  $PY -m fashionchameleon eval --checkpoint "$s" --codec "$CODEC" --variants "$ablations" --protocols a \
    --seeds "$EVAL_SEEDS" --cases "$EVAL_CASES" --threads "$THREADS" \
    --out "$REPORTS/switchbench-student-$CHOSEN$TAG" --json > "$REPORTS/switchbench-student-$CHOSEN$TAG.json"
  # world-v1 seeds (v1's framing, centre-cropped to the student's portrait): paired with the shipped v1 student
  # on the same seeds (reports/switchbench.json)
  $PY -m fashionchameleon eval --checkpoint "$s" --codec "$CODEC" --world 1 --variants "$ablations" --protocols a \
    --seeds "$EVAL_SEEDS" --cases "$EVAL_CASES" --threads "$THREADS" \
    --out "$REPORTS/switchbench-student-$CHOSEN$TAG-world1" --json > "$REPORTS/switchbench-student-$CHOSEN$TAG-world1.json"
  $PY -m fashionchameleon compare reports/switchbench.json "$REPORTS/switchbench-student-$CHOSEN$TAG-world1.json" \
    --json > "$REPORTS/compare-switchbench-world1-v1-student-$CHOSEN$TAG.json"
  # real photos, paired with v1 case by case
  [ -d "$PILOT/realbench" ] || $PY scripts/make_realbench.py "$PILOT/realbench" $REAL_ARGS
  $PY -m fashionchameleon eval --real "$PILOT/realbench" --checkpoint "$s" --codec "$CODEC" --threads "$THREADS" \
    --out "$REPORTS/realbench-student-$CHOSEN$TAG" --json > "$REPORTS/realbench-student-$CHOSEN$TAG.json"
  # (v1's RealBench ran on the full photo set; SMOKE's set shares no case with it)
  [ "${SMOKE:-0}" = 1 ] || $PY -m fashionchameleon compare reports/pilot-v2/realbench-v1.json \
    "$REPORTS/realbench-student-$CHOSEN$TAG.json" --json > "$REPORTS/compare-realbench-v1-student-$CHOSEN$TAG.json"
  # 1,000-frame runs and ten switches in a row (the weakest motion window), on the first LONG_CASES seeds
  $PY -m fashionchameleon eval --checkpoint "$s" --codec "$CODEC" --variants full --protocols a --long \
    --long-frames "$LONG_FRAMES" --seeds "$EVAL_SEEDS" --cases "$LONG_CASES" --threads "$THREADS" \
    --out "$REPORTS/switchbench-student-$CHOSEN$TAG-long" --json > "$REPORTS/switchbench-student-$CHOSEN$TAG-long.json"
  # speed last, and only on an idle machine: end-to-end fps and the teacher's slowdown (same shape: the teacher
  # row runs the same network bidirectionally)
  $PY -m fashionchameleon bench --checkpoint "$s" --codec-folder "$CODEC" --config "$CHOSEN" \
    --blocks "$BENCH_BLOCKS" --threads "$THREADS" $BENCH_ARGS --json > "$REPORTS/bench-student-$CHOSEN$TAG.json"
fi
echo "pilot outputs: $REPORTS"
