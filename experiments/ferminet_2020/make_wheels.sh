#!/usr/bin/env bash
# Prepare .whl/ for gpu_run.sh on a machine with no package index (a lent GPU machine has
# jax with CUDA, but not folx, PySCF, NetKet or the project's flax/optax pins). Run from the repository
# root, on a machine that reaches PyPI. PySCF is unpacked and trimmed (no DFT/PBC libraries, only
# the basis sets the pretraining uses) so that the tree that travels stays small (~19 MB).
set -eu
py=${PYTHON_VERSION:-3.12}
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl flax==0.12.8 optax==0.2.8 folx==0.2.30
# NetKet for the side-by-side GCNN step (experiments/gpu/bench.py), in .whl_netket/ (carried only
# by calls that run the benchmark): it and what it needs that the GPU image lacks (numba,
# equinox, einops, scipy, rich, tqdm are there); 8.5 MB
mkdir -p .whl_netket
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl_netket netket==3.23.0 plum-dispatch==2.10.1 \
  beartype==0.23.1 sparse==0.19.3 igraph==1.0.0 texttable==1.7.2 orjson==3.13.0
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
  --implementation cp --platform manylinux2014_x86_64 -d "$tmp" pyscf==2.14.0
(cd "$tmp" && unzip -q pyscf-*.whl 'pyscf/*' \
  && rm -rf pyscf/pbc pyscf/lib/deps/lib/libxc.so* pyscf/lib/deps/lib64/libxcfun.so* \
            pyscf/lib/libpbc.so pyscf/dft/sap_data.py \
  && find pyscf/gto/basis -name "*.dat" ! -iname "cc-pvdz.dat" ! -iname "sto-3g.dat" \
          ! -iname "ano.dat" -delete)
tar czf .whl/pyscf_trim.tgz -C "$tmp" pyscf
rm -rf "$tmp"
du -sh .whl .whl_netket
