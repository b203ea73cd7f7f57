. .venv/bin/activate
S='BeH2=Be 0 0 0; H 0 0 1.33; H 0 0 -1.33'
F='FH=F 0 0 0; H 0 0 0.917'
C='CH4=C 0 0 0; H 0.6276 0.6276 0.6276; H -0.6276 -0.6276 0.6276; H -0.6276 0.6276 -0.6276; H 0.6276 -0.6276 -0.6276'
T='CH2=C 0 0 0; H 0 0.9919 0.4221; H 0 -0.9919 0.4221'
N='NO=N 0 0 0; O 0 0 1.15'
# 2-core Intel Xeon, 2026-12-05; "exact" is the backflow with exact summation (the former default)
for path in exact ar; do
  extra=""; [ $path = ar ] && extra="--sampler autoregressive"
  /usr/bin/time -f "%e s wall %U user" nqs bench-fci --molecule "$S" --molecule "$F" --molecule "$C" $extra --out singlets_$path > singlets_$path.log 2>&1
  /usr/bin/time -f "%e s wall %U user" nqs bench-fci --molecule "$T" --spin 2 $extra --out ch2_$path > ch2_$path.log 2>&1
  /usr/bin/time -f "%e s wall %U user" nqs bench-fci --molecule "$N" --spin 1 $extra --out no_$path > no_$path.log 2>&1
done
echo ALLDONE
# O2 triplet, the same two ways (o2_exact: the former default; o2_ar: --sampler autoregressive)
nqs bench-fci --molecule O2="O 0 0 0; O 0 0 1.21" --spin 2 --out o2
nqs bench-fci --molecule O2="O 0 0 0; O 0 0 1.21" --spin 2 --sampler autoregressive --out o2ar
