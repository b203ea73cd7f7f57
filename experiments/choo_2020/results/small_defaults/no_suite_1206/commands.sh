# 2-core Intel Xeon, 2026-12-06, all defaults, one at a time; consoles beside this file.
# m5 and m6 ran before 5969cfd (the start's root; their targets hold Hartree-Fock either way).
. .venv/bin/activate
nqs bench-fci --molecule H2Os="O 0 0 0; H 1.5 1.16 0; H -1.5 1.16 0" --out h2os        # m5: 0.023 mHa, 47 s
python -c "from pyscf import gto, scf, tools; m = gto.M(atom='N 0 0 0; H 0 0 1.04', basis='sto-3g', spin=2, verbose=0); tools.fcidump.from_scf(scf.ROHF(m).run(), 'nh.fcidump')"
nqs bench-fci --fcidump nh.fcidump --out nh                                             # m6: NH triplet, 0.0003 mHa, 27 s
nqs molecule --molecule "Li 0 0 0; H 0 0 1.6" --out lih                                 # m7: 0.0003 mHa, 35 s
nqs bench-fci --molecule N2="N 0 0 0; N 0 0 1.1" --basis 6-31g --cas 6 6 --out n2cas   # m8: 0.0044 mHa, 49 s
nqs bench-fci --molecule NH4="N 0 0 0; H 0.629 0.629 0.629; H -0.629 -0.629 0.629; H -0.629 0.629 -0.629; H 0.629 -0.629 -0.629" --charge 1 --out nh4   # m9: 0.57 mHa, 304 s (CCSD(T) 0.17)
nqs bench-fci --molecule HF="H 0 0 0; F 0 0 0.917" --basis 6-31g --frozen-core --out hf   # m10: 0.22 mHa, 246 s (CCSD(T) 0.41)
