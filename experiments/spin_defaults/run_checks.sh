#!/bin/bash
# The `nqs spin` defaults on several lattices against Lanczos: one run after another.
# Usage: bash experiments/spin_defaults/run_checks.sh OUTDIR [TIME_LIMIT_S]
out=${1:-runs/spin_defaults}; limit=${2:-600}
py=${PYTHON:-python}
run() {  # name, then the nqs spin options
  name=$1; shift
  echo "== $name: nqs spin $* --time-limit $limit  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  $py -m nqs spin "$@" --time-limit "$limit" --out "$out/$name" --overwrite 2>&1 \
    | grep -v "^VMC step" | tail -3
}
run heis_square4 --model heisenberg --lattice square --size 4
run j1j2_square4 --model j1j2 --lattice square --size 4 --j2 0.5
run heis_chain16 --model heisenberg --lattice chain --size 16
run heis_honeycomb2 --model heisenberg --lattice honeycomb --size 2
run heis_triangular4 --model heisenberg --lattice triangular --size 4
run heis_honeycomb3 --model heisenberg --lattice honeycomb --size 3
