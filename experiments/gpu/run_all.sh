#!/usr/bin/env bash
# Every GPU figure the open issues ask for, in one call of a lent GPU (experiments/gpu/README.md).
#
#   bash experiments/gpu/run_all.sh OUT_DIR [DEADLINE_SECONDS]      # default deadline 540 s
#
# Runs from the repository root, after experiments/gpu/prepare.sh on a CPU machine (wheels in
# .whl/, FCIDUMP files in .gpu_inputs/; both travel with `carry`). In order:
#   1. installs the carried wheels and PySCF tree into $NQS_GPU_WORK/site (skipped without .whl/
#      or with NQS_GPU_DRY=1); writes device.txt;
#   2. benchmarks, alone on the GPU (NQS_GPU_BENCH=0 skips them, e.g. in a session that only
#      resumes the runs): experiments/gpu/bench.py (issue 16: the GCNN VMC step of nqs and
#      NetKet side by side, 4x4 and 10x10; NQS_GPU_BENCH_PARTS="ar gcnn" adds issue 13's unique
#      samples/s of sampling + local energies, N2/6-31G frozen core), then
#      experiments/benchmarks/realspace_step.py (issue 17: LiH, 4 x (256, 32), 16 determinants,
#      256 walkers, the DeepQMC comparison's size: local energy and one adam / SR step);
#   3. the runs, side by side on the GPU (XLA_PYTHON_CLIENT_PREALLOCATE=false and a memory
#      fraction each), each with --time-limit so that it ends, final evaluation included, before
#      the deadline: B C N O and N2 in real space (issue 17); on request (NQS_GPU_JOBS; their
#      targets are met) n2dz (issue 13: N2/cc-pVDZ frozen core, autoregressive sampler, from
#      .gpu_inputs/n2_ccpvdz_fc.fcidump, --reference none) and heis10 (issue 16: 10x10
#      periodic Heisenberg at the CLI's default ansatz);
#   4. packs at most 8 files into OUT_DIR (summary.tgz, bench.tgz, mol_spin.tgz, one .tgz per
#      real-space system, each with its checkpoint) and prints the summary table.
# Resume: put the .tgz files of an earlier call in .gpu_inputs/resume/; every run whose
# checkpoint is there continues with --resume (more steps; the cosine schedules restart nothing).
# Knobs (environment): NQS_GPU_JOBS (default "B C N O N2"), NQS_GPU_BENCH (1),
# NQS_GPU_BENCH_S (240: the benchmarks' share, 70 % of it bench.py's), NQS_GPU_BENCH_PARTS
# (gcnn), NQS_GPU_MARGIN (150: seconds kept after the
# training limit for start-up, compilation, pretraining and the final evaluation),
# NQS_GPU_N2DZ_START (120: seconds of n2dz's training limit left to its start fit),
# NQS_GPU_DRY=1 (tiny sizes, for a CPU; n2dz on N2/6-31G), NQS_PYTHON (python3), NQS_GPU_WORK (/tmp/gpu),
# NQS_GPU_{N2DZ,SPIN,RS}_OPTIONS (extra options of those runs).
set -u
out=${1:?usage: run_all.sh OUT_DIR [DEADLINE_SECONDS]}
deadline=${2:-540}
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
left() { echo $(( deadline - $(elapsed) )); }
dry=${NQS_GPU_DRY:-0}
py=${NQS_PYTHON:-python3}
work=${NQS_GPU_WORK:-/tmp/gpu}
jobs=(${NQS_GPU_JOBS:-B C N O N2})
inputs=.gpu_inputs
mkdir -p "$out" "$work/runs" "$work/logs"
out=$(cd "$out" && pwd)

export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ "$dry" != 1 ] && ls .whl/*.whl > /dev/null 2>&1; then
  # NetKet's wheels (.whl_netket/) travel only with calls that run the GCNN benchmark
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$work/site" .whl/*.whl $(ls .whl_netket/*.whl 2>/dev/null) || exit 1
  [ -f .whl/pyscf_trim.tgz ] && { tar xzf .whl/pyscf_trim.tgz -C "$work/site" || exit 1; }
  export PYTHONPATH=$work/site:$PWD
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
{
  echo "start $(date -u +%FT%TZ), deadline ${deadline} s, dry ${dry}, jobs ${jobs[*]}"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -3
  "$py" -c "import jax, flax, optax; print('jax', jax.__version__, jax.devices(), 'flax', \
flax.__version__, 'optax', optax.__version__)" 2>&1 | tail -1
  "$py" -c "import folx, pyscf; print('folx', folx.__version__, 'pyscf', pyscf.__version__)" 2>&1 | tail -1
  echo "cpus $(nproc)"; git log -1 --format='commit %H %s' 2>/dev/null
  ls -l "$inputs" 2>&1
} > "$work/device.txt"
cat "$work/device.txt"
( while sleep 15; do
    echo "$(elapsed) s: $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>&1)"
  done ) > "$work/logs/gpu_util.txt" 2>&1 &
monitor=$!

# earlier sessions' runs (resume)
for t in "$inputs"/resume/*.tgz; do
  [ -f "$t" ] && tar xzf "$t" -C "$work" runs 2>/dev/null && echo "resume: unpacked $t"
done

# 2. benchmarks, alone on the GPU
if [ "${NQS_GPU_BENCH:-1}" = 1 ]; then
  bench_s=${NQS_GPU_BENCH_S:-240}
  if [ "$dry" = 1 ]; then
    bopts=(--fit-steps 20 --samples 256 --max-unique 64 --sizes 4 --repeats 2)
    ropts=(--small --walkers 16 --repeats 1 --optimizers adam --mcmc-steps 2 --variants hvp)
  else
    bopts=()
    ropts=(--walkers 256 --repeats 3 --optimizers adam --variants hvp)
  fi
  t_end=$(( $(elapsed) + bench_s ))
  timeout -k 5 $(( bench_s * 7 / 10 )) "$py" experiments/gpu/bench.py --out "$work/bench" \
    --parts ${NQS_GPU_BENCH_PARTS:-gcnn} --time-limit $(( bench_s * 7 / 10 - 10 )) \
    "${bopts[@]}" > "$work/logs/bench.stdout" 2>&1
  rc=$?
  echo "bench.py exit $rc at $(elapsed) s"
  timeout -k 5 $(( t_end - $(elapsed) )) "$py" experiments/benchmarks/realspace_step.py \
    "${ropts[@]}" --out "$work/bench/realspace_step" > "$work/logs/realspace_step.stdout" 2>&1
  rc=$?
  echo "realspace_step.py exit $rc at $(elapsed) s"
fi

# 3. the runs, side by side
margin=${NQS_GPU_MARGIN:-150}
train=$(( $(left) - margin ))
hard=$(( $(left) - 25 ))
if [ "$train" -lt 20 ]; then
  echo "only $(left) s left: training limit $train s is too short; NQS_GPU_MARGIN / the deadline"
  train=20
fi
frac=$(awk -v n=${#jobs[@]} 'BEGIN { printf "%.2f", 0.9 / n }')
echo "runs: ${jobs[*]}; training limit ${train} s each, hard stop in ${hard} s, memory fraction ${frac}"
if [ "$dry" = 1 ]; then
  n2dz_file=$inputs/n2_631g_fc.fcidump  # a CISD start on 52 spin orbitals takes minutes here
  mol=(--hidden 16 --samples 256 --max-unique 32 --start cisd --start-steps 5)
  spin=(--size 4 --samples 64 --chains 8 --steps 1000 --eval-batches 1)
  rs=(--layers 1 --hidden 8 4 --determinants 1 --walkers 16 --pretrain-steps 5 --eval-steps 2
      --mcmc-steps 2 --optimizer sr --lr 0.05)
else
  n2dz_file=$inputs/n2_ccpvdz_fc.fcidump
  mol=()
  spin=(--size 10 --samples 4096 --chains 512 --steps 2000)
  # the network and optimizer of experiments/ferminet_2020/gpu_run.sh (LiH and Be within 0.05 mHa)
  rs=(--layers 3 --hidden 128 16 --determinants 8 --walkers 2048 --pretrain-steps 300
      --optimizer sr --momentum 0.9 --lr 0.05 --eval-steps 200)
fi
job_args() {  # the nqs command line of job $1, into the array args
  local rsopts=(--steps 1000000 "${rs[@]}" ${NQS_GPU_RS_OPTIONS:-})
  case $1 in
    n2dz) args=(molecule --fcidump "$n2dz_file" --reference none --steps 100000
                "${mol[@]}" ${NQS_GPU_N2DZ_OPTIONS:-}) ;;
    heis10) args=(spin --model heisenberg --lattice square "${spin[@]}" ${NQS_GPU_SPIN_OPTIONS:-}) ;;
    B) args=(realspace --molecule "B 0 0 0" --spin 1 "${rsopts[@]}") ;;
    C) args=(realspace --molecule "C 0 0 0" --spin 2 "${rsopts[@]}") ;;
    N) args=(realspace --molecule "N 0 0 0" --spin 3 "${rsopts[@]}") ;;
    O) args=(realspace --molecule "O 0 0 0" --spin 2 "${rsopts[@]}") ;;
    N2) args=(realspace --molecule "N 0 0 0; N 0 0 2.068" --unit bohr "${rsopts[@]}") ;;
    *) return 1 ;;
  esac
}
pids=()
names=()
for j in "${jobs[@]}"; do
  job_args "$j" || { echo "unknown job $j"; continue; }
  res=()
  [ -f "$work/runs/$j/checkpoint.msgpack" ] && res=(--resume)
  limit=$train
  # the autoregressive start (CISD + one selection round, host CPU) is outside --time-limit
  [ "$j" = n2dz ] && limit=$(( train - ${NQS_GPU_N2DZ_START:-120} )) && [ $limit -lt 20 ] && limit=20
  XLA_PYTHON_CLIENT_MEM_FRACTION=$frac timeout -k 10 "$hard" "$py" -m nqs.cli "${args[@]}" \
    --time-limit "$limit" --checkpoint-every 50 --out "$work/runs/$j" "${res[@]}" \
    > "$work/logs/$j.stdout" 2>&1 &
  pids+=($!)
  names+=("$j")
  echo "$j: nqs ${args[*]} ${res[*]}" >> "$work/logs/commands.txt"
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  rc=$?
  echo "$(elapsed) s: ${names[$i]} exit $rc$([ $rc = 124 ] && echo ' (hard stop)')" \
    | tee -a "$work/logs/exits.txt"
done
kill "$monitor" 2>/dev/null

# 4. summary and packing (at most 8 files)
"$py" experiments/gpu/summary.py "$work" > "$work/summary.txt" 2>&1
cp "$work/device.txt" "$work/summary.txt" "$work/logs/"
[ -f "$work/summary.json" ] && cp "$work/summary.json" "$work/logs/"
pack() {  # pack NAME PATH... (relative to $work), those that exist
  local name=$1; shift
  local have=()
  for p in "$@"; do [ -e "$work/$p" ] && have+=("$p"); done
  [ ${#have[@]} -gt 0 ] && tar czf "$out/$name.tgz" -C "$work" "${have[@]}"
}
pack summary logs
pack bench bench
pack mol_spin runs/n2dz runs/heis10
extra=()
for j in "${jobs[@]}"; do
  case $j in
    n2dz|heis10) ;;
    B|C|N|O|N2) pack "rs_$j" "runs/$j" ;;
    *) extra+=("runs/$j") ;;
  esac
done
[ ${#extra[@]} -gt 0 ] && pack extra "${extra[@]}"
ls -l "$out"
n=$(ls "$out" | wc -l)
big=$(find "$out" -type f -size +16M)
[ "$n" -le 8 ] || echo "WARNING: $n files in $out; the device tool brings back 8"
[ -z "$big" ] || echo "WARNING: over 16 MiB (not brought back): $big"
cat "$work/summary.txt"
echo "done at $(elapsed) s of ${deadline}"
