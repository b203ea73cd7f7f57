#!/usr/bin/env bash
# What to run on the CPU machine before a lent GPU session (experiments/gpu/README.md):
# wheels (flax, optax, folx and a trimmed PySCF tree) into .whl/, NetKet's into .whl_netket/,
# the FCIDUMP files into .gpu_inputs/, and, with RESUME_FROM=DIR, an earlier call's .tgz files into .gpu_inputs/resume/.
# Prints the size of what will travel (under 64 MiB in all).
#
#   bash experiments/gpu/prepare.sh                       # from the repository root
#   RESUME_FROM=/work/.device/... bash experiments/gpu/prepare.sh
#   RESUME_FROM=experiments/gpu/results/2026-12-04-h200 bash experiments/gpu/prepare.sh
set -eu
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3
{ [ -f .whl/pyscf_trim.tgz ] && ls .whl_netket/netket-*.whl > /dev/null 2>&1; } || bash experiments/ferminet_2020/make_wheels.sh
PYTHONPATH=$PWD "$py" experiments/gpu/prepare.py
rm -rf .gpu_inputs/resume  # no stale checkpoints: only RESUME_FROM's are resumed
if [ -n "${RESUME_FROM:-}" ]; then
  mkdir -p .gpu_inputs/resume
  for f in "$RESUME_FROM"/rs_*.tgz "$RESUME_FROM"/mol_spin.tgz; do
    [ -f "$f" ] && cp "$f" .gpu_inputs/resume/
  done
  # a results folder kept in the repository (runs/<job>/checkpoint.msgpack + log.jsonl)
  for c in "$RESUME_FROM"/runs/*/checkpoint.msgpack; do
    [ -f "$c" ] || continue
    job=$(basename "$(dirname "$c")")
    tar czf ".gpu_inputs/resume/run_$job.tgz" -C "$RESUME_FROM" "runs/$job"
  done
fi
{ git check-ignore -q .whl/x && git check-ignore -q .whl_netket/x && git check-ignore -q .gpu_inputs/x; } \
  || { echo ".whl, .whl_netket or .gpu_inputs is not git-ignored"; exit 1; }
tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carried=$(du -cb .whl .gpu_inputs | tail -1 | cut -f1)
netket=$(du -cb .whl_netket | tail -1 | cut -f1)
echo "travels: tracked files $((tracked / 1048576)) MiB + carried .whl .gpu_inputs" \
  "$((carried / 1048576)) MiB (+ .whl_netket $((netket / 1048576)) MiB when the call runs the" \
  "benchmarks) = $(((tracked + carried + netket) / 1048576)) MiB (limit 64 MiB)"
du -sh .whl .whl_netket .gpu_inputs .gpu_inputs/* 2>/dev/null
