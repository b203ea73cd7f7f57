# 2-core Intel Xeon, 2026-12-06, beside spin runs (load 2-4); all defaults
. .venv/bin/activate
for spec in "C 2" "N 3" "O 2"; do set -- $spec
  nqs bench-fci --molecule "$1=$1 0 0 0" --spin $2 --basis 6-31g --out runs/atom_$1
done
