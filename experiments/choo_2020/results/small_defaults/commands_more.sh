# 2-core Intel Xeon, 2026-12-05, all defaults (the autoregressive state at every size)
. .venv/bin/activate
nqs bench-fci --molecule LiH --molecule "BeH2=Be 0 0 0; H 0 0 1.33; H 0 0 -1.33" --basis 6-31g --out b631
nqs bench-fci --molecule "H2O+=O 0 0 0; H 0.7572 0.5865 0; H -0.7572 0.5865 0" --charge 1 --spin 1 --out h2op
