# 2-core Intel Xeon, 2026-12-06, all defaults, one at a time (m11-m16 at 6e39f02, m17-m20 with
# the guard's rise test of 3256105, which rejected no step of theirs); consoles beside this file (progress
# lines dropped). Errors against FCI in mHa; CCSD(T)'s error in brackets.
. .venv/bin/activate
nqs bench-fci --molecule BeH2="Be 0 0 0; H 0 0 1.326; H 0 0 -1.326" --out beh2                     # m11: 0.022 (0.18), 54 s
nqs bench-fci --molecule CH2="C 0 0 0; H 0 0.992 -0.421; H 0 -0.992 -0.421" --spin 2 --out ch2t     # m12: triplet, 0.063 (0.067), 55 s
nqs bench-fci --molecule BH3="B 0 0 0; H 1.19 0 0; H -0.595 1.0306 0; H -0.595 -1.0306 0" --out bh3 # m13: 0.16 (0.14), 66 s
nqs bench-fci --molecule LiF="Li 0 0 0; F 0 0 1.564" --out lif                                      # m14: 44100 dets, 0.18 (-0.88), 220 s
nqs bench-fci --molecule F2="F 0 0 0; F 0 0 1.412" --out f2                                         # m15: -0.0006 +- 0.00014 (0.0000): below FCI by 4 error bars, see below_fci
nqs bench-fci --molecule HCN="H 0 0 -1.064; C 0 0 0; N 0 0 1.156" --out hcn                          # m16: 108900 dets, 0.22 (2.13), 571 s
nqs bench-fci --molecule CH4="C 0 0 0; H 0.629 0.629 0.629; H -0.629 -0.629 0.629; H -0.629 0.629 -0.629; H 0.629 -0.629 -0.629" --out ch4   # m17: 0.59 (0.09), 98 s
nqs bench-fci --molecule CN="C 0 0 0; N 0 0 1.172" --spin 1 --out cn                                # m18: doublet, 0.057 (3.45), 293 s
nqs bench-fci --molecule NO="N 0 0 0; O 0 0 1.151" --spin 1 --out no                                # m19: doublet, 0.26 (1.68), 146 s
nqs bench-fci --molecule LiH="Li 0 0 0; H 0 0 3.2" --out lih_stretched                              # m20: 0.0042 (-0.028), 39 s
