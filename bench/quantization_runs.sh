#!/bin/bash
# The measurements behind README.md "Quantization and real time on your board", in the order they
# were run (one flock: nothing else heavy runs meanwhile; 2 torch threads; each JSON records the
# machine and its load). About an hour on a 2-core CPU; needs ~9 GB of free memory and ~9 GB of
# disk in /tmp. Usage: flock /tmp/heavy.lock bench/quantization_runs.sh [step ...]
set -uo pipefail  # one failed run does not stop the others
cd "$(dirname "$0")"
PY=${PYTHON:-../.venv/bin/python}
OUT=results
steps=${*:-"kernels steps quality memory"}
# Other people's jobs on a shared machine stretch every step; wait (up to 10 min) until the
# 1-minute load average is below QUIET_LOAD before each measurement. The JSONs record the load.
quiet() {
  for _ in $(seq 120); do
    awk -v limit="${QUIET_LOAD:-1.5}" '{exit !($1 < limit)}' /proc/loadavg && return
    sleep 5
  done
}
for step in $steps; do
  echo "== $step $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
  case $step in
    kernels)
      quiet
      $PY linear_kernels.py --mlps 8 --rounds 5 --threads 2 --json $OUT/linear_kernels_cpu.json ;;
    steps)
      for q in none int8 int4; do
        for c in false true; do
          quiet
          $PY step_latency.py --model real --dtype bfloat16 --quantization $q --compile $c \
            --chunks 30 --warmup 5 --contexts 100,1000 --reps 10 --max-reply-tokens 4 \
            --threads 2 --json $OUT/step_latency_real_cpu_bfloat16_${q}_compile_${c}.json
        done
      done ;;
    quality)
      $PY quantization_quality.py trained --json $OUT/quantization_quality_trained.json
      quiet
      $PY quantization_quality.py realdim --threads 2 --json $OUT/quantization_quality_realdim.json ;;
    memory)
      $PY load_memory.py --json $OUT/load_memory_real.json ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
  echo "== $step done: exit $?"
done
