#!/usr/bin/env bash
# LiH and Be side by side on one GPU, each optimized for a wall-clock budget, then evaluated;
# then the real-space step benchmark (folx vs Hessian trace) in whatever time is left.
#
#   bash experiments/ferminet_2020/gpu_run.sh OUT_DIR [TRAIN_SECONDS] [DEADLINE_SECONDS]
#
# Runs from the repository root. On a machine without the project's packages (a lent GPU
# machine has jax, but not pyscf, folx, or our flax/optax pins), put wheels and a PySCF tree in
# .whl/ first (experiments/ferminet_2020/make_wheels.sh); they are installed into /tmp/site.
# OUT_DIR receives device.txt and one .tgz per run (stdout, result.json, log.jsonl,
# convergence.png, checkpoint) and bench.tgz. Nothing here is needed by the tests or by CI.
set -u
out=${1:?usage: gpu_run.sh OUT_DIR [TRAIN_SECONDS] [DEADLINE_SECONDS]}
budget=${2:-340}
deadline=${3:-570}
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
mkdir -p "$out" /tmp/runs
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  tar xzf .whl/pyscf_trim.tgz -C /tmp/site || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, flax, optax, folx, pyscf; print('jax', jax.__version__, jax.devices(), \
'flax', flax.__version__, 'optax', optax.__version__, 'pyscf', pyscf.__version__)"
  nproc
} > "$out/device.txt" 2>&1
cat "$out/device.txt"

# the network and optimizer of the runs (README: "GPU runs")
common=(--layers 3 --hidden 128 16 --determinants 8 --walkers 2048 --pretrain-steps 500
        --optimizer sr --momentum 0.9 --lr 0.05 ${NQS_GPU_OPTIONS:-} --steps 1000000 --eval-steps 400
        --checkpoint-every 200 --time-limit "$budget")
pids=()
for sys in LiH Be; do
  timeout $(( deadline - $(elapsed) - 40 )) python3 -m nqs.cli realspace --preset "$sys" \
    "${common[@]}" --out "/tmp/runs/$sys" > "/tmp/runs/$sys.stdout" 2>&1 &
  pids+=($!)
done
( while sleep 20; do
    echo "$(elapsed) s: $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
  done ) > /tmp/runs/gpu_util.txt 2>&1 &
monitor=$!
wait "${pids[@]}"
kill "$monitor" 2>/dev/null
echo "runs done at $(elapsed) s"
for sys in LiH Be; do
  tail -3 "/tmp/runs/$sys.stdout"
  files=("$sys.stdout" gpu_util.txt)
  for f in result.json log.jsonl convergence.png checkpoint.msgpack; do
    [ -f "/tmp/runs/$sys/$f" ] && files+=("$sys/$f")
  done
  tar czf "$out/$sys.tgz" -C /tmp/runs "${files[@]}"
done

left=$(( deadline - $(elapsed) - 10 ))
if [ "$left" -gt 60 ]; then
  timeout "$left" python3 experiments/benchmarks/realspace_step.py \
    ${NQS_GPU_BENCH_OPTIONS:---walkers 2048 --repeats 3 --variants hvp jax-hessian --optimizers sr} --out /tmp/runs/bench > /tmp/runs/bench.stdout 2>&1
  echo "benchmark exit $? at $(elapsed) s"
  cat /tmp/runs/bench.stdout
  tar czf "$out/bench.tgz" -C /tmp/runs bench.stdout $(cd /tmp/runs && ls bench/* 2>/dev/null)
fi
echo "done at $(elapsed) s"
