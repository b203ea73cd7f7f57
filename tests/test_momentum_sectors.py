"""Momentum-sector exact diagonalisation: the translation of bit codes, and exact_energy's
momentum path against Lanczos on the whole sector."""

import numpy as np
import pytest

import hamiltonians.momentum_sectors as ms
import hamiltonians.spin_reference as ref
from hamiltonians.lattice import Lattice, chain, honeycomb, square, triangular
from hamiltonians.momentum_sectors import permute_codes, sector_codes, translation_orbits
from hamiltonians.spin import J1J2, XXZ, Heisenberg, TransverseFieldIsing


@pytest.mark.parametrize("lat", [chain(9), square(3), triangular(3), honeycomb(2),
                                 Lattice("square", (2, 4))], ids=lambda lat: lat.describe())
def test_translated_codes_equal_the_site_by_site_permutation(lat) -> None:
    n = lat.n_sites
    codes = np.random.default_rng(0).integers(0, 1 << n, 500, dtype=np.int64)
    bit = n - 1 - np.arange(n)
    for perm in lat.translations():
        slow = np.zeros_like(codes)
        for i in range(n):  # the bit of site i moves to the bit of site perm[i]
            slow |= ((codes >> bit[i]) & 1) << bit[perm[i]]
        np.testing.assert_array_equal(permute_codes(codes, perm, n), slow)


def test_orbits_partition_the_sector() -> None:
    model = Heisenberg(chain(10))
    orbits = translation_orbits(model)
    np.testing.assert_array_equal(orbits.codes, sector_codes(10, 0))
    assert len(orbits.codes) == 252
    # every code's representative is the smallest of its orbit, reached by t_star
    trans = model.lattice.translations()
    for c, pos, t in zip(orbits.codes, orbits.rep_pos, orbits.t_star, strict=True):
        images = [permute_codes(np.array([c]), perm, 10)[0] for perm in trans]
        assert orbits.codes[pos] == min(images) == images[t]
    # orbit sizes (T / stabilizer) add up to the sector
    stab = np.array([bin(int(s)).count("1") for s in orbits.stabilizer])
    assert np.sum(10 // stab) == 252


@pytest.mark.parametrize("model", [
    XXZ(chain(12), delta=2.0),
    J1J2(chain(12), j2=1.0, marshall_sign=True),  # ground state outside momentum zero
    Heisenberg(chain(10)),  # no Marshall sign: momentum pi
    TransverseFieldIsing(square(3), h=2.0),  # full space, no S^z
    J1J2(honeycomb(2), j2=0.3),
    XXZ(triangular(4), delta=0.5),
    TransverseFieldIsing(Lattice("square", (2, 4)), h=-1.5, J=-1.0),  # stoquastic for h > 0
    Heisenberg(Lattice("square", (2, 4)), J=-1.0),  # ferromagnet: stoquastic as it stands
], ids=lambda m: m.describe())
def test_exact_energy_through_momentum_sectors_equals_lanczos(model, monkeypatch) -> None:
    full = ref.lanczos_ground_state(model)
    monkeypatch.setattr(ref, "MAX_AUTO_LANCZOS_STATES", model.hilbert.n_states // 2)
    energy, source = ref.exact_energy(model)
    assert source == "exact diagonalization (Lanczos, momentum sectors)"
    assert energy == pytest.approx(full, abs=1e-9)


def test_momentum_path_limits(monkeypatch) -> None:
    # open lattices and sectors still too large per momentum stay without a reference
    monkeypatch.setattr(ref, "MAX_AUTO_LANCZOS_STATES", 100)
    assert not ref.momentum_sectors_fit(XXZ(chain(12, pbc=False), delta=2.0))
    assert not ref.momentum_sectors_fit(XXZ(chain(16), delta=2.0))  # 12870 / 16 > 100
    assert ref.exact_energy(XXZ(chain(16), delta=2.0)) == (None, "none")
    assert ref.momentum_sectors_fit(XXZ(chain(12), delta=2.0))  # 924 / 12 <= 100


def test_majumdar_ghosh_chain_through_momentum_sectors(monkeypatch) -> None:
    # J2 = J1 / 2: the dimer product states are exact ground states, E0 = -3 N / 8 (the chain
    # of 24, beyond the full sector's limit, gives -9.000000000000014 in a few minutes)
    monkeypatch.setattr(ref, "MAX_AUTO_LANCZOS_STATES", 100)
    energy, source = ref.exact_energy(J1J2(chain(12), j2=0.5))
    assert "momentum sectors" in source
    assert energy == pytest.approx(-4.5, abs=1e-10)


def test_stoquastic_forms() -> None:
    tfim = TransverseFieldIsing(square(3), h=-2.0)
    assert ms.stoquastic_form(tfim).h == 2.0
    plain = Heisenberg(chain(10))
    assert ms.stoquastic_form(plain).marshall_sign  # rotated: same spectrum
    marshall = Heisenberg(chain(10), marshall_sign=True)
    assert ms.stoquastic_form(marshall) is marshall
    # frustration leaves a positive exchange in every basis
    assert ms.stoquastic_form(J1J2(square(4), j2=0.5, marshall_sign=True)) is None
    assert ms.stoquastic_form(Heisenberg(triangular(3))) is None
    assert ms.stoquastic_form(Heisenberg(chain(9))) is None  # odd ring: not bipartite


@pytest.mark.parametrize("model", [
    TransverseFieldIsing(square(3), h=2.5),
    Heisenberg(chain(12), marshall_sign=True),
    XXZ(Lattice("square", (2, 4)), delta=0.5, marshall_sign=True),
], ids=lambda m: m.describe())
def test_stoquastic_ground_state_is_at_zero_momentum(model, monkeypatch) -> None:
    # the shortcut (zero momentum only) against the search over every momentum
    k, energy = ms.ground_state_momentum(model)
    monkeypatch.setattr(ms, "stoquastic_form", lambda model: None)
    k_all, energy_all = ms.ground_state_momentum(model)
    assert k == k_all == (0,) * model.lattice.ndim
    assert energy == pytest.approx(energy_all, abs=1e-9)


def test_stoquastic_models_get_the_larger_momentum_limit(monkeypatch) -> None:
    monkeypatch.setattr(ref, "MAX_MOMENTUM_STATES", 100)
    monkeypatch.setattr(ref, "MAX_STOQUASTIC_MOMENTUM_STATES", 1000)
    assert ref.momentum_sectors_fit(Heisenberg(chain(12)))  # 924 states, stoquastic form
    assert not ref.momentum_sectors_fit(J1J2(chain(12), j2=0.3))  # frustrated: 924 > 100
