"""Exact summation split over 4 simulated devices equals one device.

The states (padded to a multiple of the device count with zero-weight copies), their log psi
and Jacobian rows, and the rows of H v are split over the devices (``nqs.exact.exact_data``).
The 4-device computation runs in the suite's one multi-device subprocess
(tests/helpers/multi_device_check.py, check ``exact``; started by tests/conftest.py), since the
device count is fixed when JAX starts.
"""

from __future__ import annotations

import numpy as np
import pytest

SAME = 1e-12  # only the order of floating-point additions differs


MULTI_DEVICE_CHECKS = ("exact",)  # read by tests/conftest.py


@pytest.fixture(scope="module")
def exact4(multi_device) -> dict:
    """The 4-device subprocess's results (started by tests/conftest.py at collection)."""
    return multi_device


def test_states_padded_and_split(exact4):
    # LiH / STO-3G: 225 determinants, padded to 228 = 4 x 57 with zero-weight copies
    assert exact4["exact_n_states"] == [225, 228]
    assert exact4["exact_states_sharded"] == 4


def test_exact_estimates_same_on_1_and_4_devices(exact4):
    assert np.isfinite(exact4["exact_energy"]) and exact4["exact_grad_norm"] > 1e-3
    assert exact4["exact_energy_1v4"] < SAME
    for case, diff in exact4["exact_estimate_1v4"].items():  # energy, variance, gradient, S
        assert diff < SAME, (case, diff)


def test_exact_runs_same_on_1_and_4_devices(exact4):
    assert exact4["exact_run_n_devices"] == [1, 4]
    assert exact4["exact_mol_run_1v4"] < SAME  # SR steps, final evaluation, parameters
    assert exact4["exact_spin_run_1v4"] < SAME  # complex RBM, minSR (J J^T over split rows)
