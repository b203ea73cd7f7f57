"""Exact summation split over 4 simulated devices equals one device.

The states (padded to a multiple of the device count with zero-weight copies), their log psi
and Jacobian rows, and the rows of H v are split over the devices (``nqs.exact.exact_data``).
The 4-device computation runs in one subprocess (tests/helpers/multi_device_check.py, check
``exact``), since the device count is fixed when JAX starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAME = 1e-12  # only the order of floating-point additions differs


@pytest.fixture(scope="module")
def exact4() -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests/helpers/multi_device_check.py"), "exact"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


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
