# 2-core Intel Xeon, 2026-12-06, all defaults. m1_co, m2_oh and m3_h4sq ran before the start
# took the lowest root of the target spin (5969cfd; CO and OH: the same root either way, its
# Hartree-Fock weight 0.92 and 0.98); m3b_h4sq and m4_h8ring after.
. .venv/bin/activate
nqs bench-fci --molecule CO="C 0 0 0; O 0 0 1.128" --out co                    # m1_co.txt
nqs bench-fci --molecule OH="O 0 0 0; H 0 0 0.97" --spin 1 --out oh            # m2_oh.txt
nqs bench-fci --molecule H4="H 0 0 0; H 1.2 0 0; H 0 1.2 0; H 1.2 1.2 0" --out h4sq   # m3_h4sq.txt (before), m3b_h4sq.txt
nqs bench-fci --molecule H8="H 1.69853 0.00000 0; H 1.20104 1.20104 0; H 0.00000 1.69853 0; H -1.20104 1.20104 0; H -1.69853 0.00000 0; H -1.20104 -1.20104 0; H -0.00000 -1.69853 0; H 1.20104 -1.20104 0" --out h8ring   # m4_h8ring.txt (regular octagon, neighbours 1.3 A)
