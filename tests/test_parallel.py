"""Many devices, chunking, checkpoints across device counts, float32 networks.

The device count is fixed when JAX starts, so the multi-device checks run in ONE subprocess with
4 simulated CPU devices (tests/helpers/multi_device_check.py, started by tests/conftest.py when
collection ends, shared with tests/test_exact_parallel.py and tests/test_sr_structured.py), which
compares each computation on a 1-device and a 4-device mesh (and chunked or not) and reports the
differences as JSON.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs.errors import InputError
from nqs.parallel import (
    auto_chunk_size,
    check_divisible,
    chunked_map,
    initialize_distributed,
    make_mesh,
    peak_memory,
)

SAME = 1e-10  # "identical statistics": only the order of floating-point additions differs


MULTI_DEVICE_CHECKS = ("spin", "molecule", "realspace", "memory")  # read by tests/conftest.py


@pytest.fixture(scope="module")
def multi(multi_device) -> dict:
    """The 4-device subprocess's results (started by tests/conftest.py at collection)."""
    return multi_device


def test_spins_same_on_1_and_4_devices(multi):
    assert multi["spin_n_devices"] == [1, 4]
    assert np.isfinite(multi["spin_energy"])
    assert multi["spin_hist_1v4"] < SAME and multi["spin_params_1v4"] < SAME
    assert {"n_devices", "n_processes", "chunk_size", "peak_memory_bytes",
            "peak_memory_source"} <= set(multi["spin_summary_keys"])


def test_molecules_same_on_1_and_4_devices(multi):
    assert np.isfinite(multi["mol_energy"])
    assert multi["mol_hist_1v4"] < SAME and multi["mol_params_1v4"] < SAME


def test_realspace_same_on_1_and_4_devices(multi):
    assert np.isfinite(multi["rs_energy"])
    assert multi["rs_sr_1v4"] < SAME  # minSR (chunked on 4): energies, parameters, walkers
    assert multi["rs_kfac_1v4"] < SAME  # KFAC (chunked local energies on 4 devices)


def test_chunked_equals_unchunked(multi):
    for key in ("spin_hist_chunk", "spin_params_chunk", "mol_hist_chunk", "mol_params_chunk",
                "rs_sr_1v4"):
        assert multi[key] < SAME, key


def test_checkpoint_written_on_4_devices_resumes_on_1(multi):
    assert multi["spin_resume_4to1"] < SAME and multi["spin_resume_hist"] < SAME


def test_chains_must_split_over_devices(multi):
    msg = multi["spin_indivisible_error"]
    assert msg is not None and msg.startswith("InputError")
    assert "divisible by the number of devices (4)" in msg and "\n" not in msg


def test_4096_walkers_fit_a_budget_by_chunking(multi):
    assert multi["mem_unchunked_estimate_per_device"] > multi["mem_budget_per_device"]
    assert multi["mem_chunk"] is not None and multi["mem_chunk"] < 1024
    assert multi["mem_chunked_temp_per_device"] <= multi["mem_budget_per_device"]
    assert multi["mem_finite"]


def test_float32_network_energy_within_statistical_error(multi):
    assert multi["f32_dtype"] == "float64"  # local energies accumulate in float64
    assert 0 < multi["f32_error_of_mean"]
    assert multi["f32_mean_diff"] < 0.1 * multi["f32_error_of_mean"]


# ---- single-process unit tests (no subprocess)


def test_chunked_map_matches_vmap_with_padding():
    def f(p, x):
        return jnp.sin(p * x).sum(), jnp.cos(x) * p

    xs = jnp.arange(21.0).reshape(7, 3)
    want = jax.vmap(f, in_axes=(None, 0))(2.0, xs)
    for chunk in (1, 2, 3, 7, 100):
        got = chunked_map(f, chunk, make_mesh(jax.devices()[:1]))(2.0, xs)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-14)


def test_auto_chunk_size_and_divisibility():
    assert auto_chunk_size(100, 64, None, budget_bytes=10**6) is None  # everything fits
    assert auto_chunk_size(1000, 4096, None, budget_bytes=100_000, fraction=1.0) == 64
    check_divisible(8, make_mesh(jax.devices()[:1]), "chains")
    with pytest.raises(InputError):
        initialize_distributed("localhost:1234", 2, None)
    with pytest.raises(InputError):
        initialize_distributed("nohost", 2, 0)
    assert initialize_distributed() is False
    mem = peak_memory()
    assert mem["peak_memory_bytes"] > 0 and mem["peak_memory_source"]


def test_cli_chunk_size_and_multiprocess_flags(capsys):
    from nqs.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["spin", "--size", "4", "--chunk-size", "many"])
    assert exc.value.code == 2 and "--chunk-size" in capsys.readouterr().err
    rc = main(["spin", "--size", "4", "--num-processes", "2", "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--coordinator-address" in err


def test_two_processes_on_localhost_match_one(two_processes, tmp_path):
    """jax.distributed with 2 CPU processes (gloo) gives the run of one process. The two
    processes ran in the background (tests/helpers/two_process_check.py via tests/conftest.py);
    the one-process run of the same arguments runs here."""
    from nqs.cli import main

    two = two_processes
    assert two["returncodes"] == [0, 0], two["stderr_tail"]
    assert two["wrote"] == [True, False]  # only process 0 writes
    assert (two["result"]["n_processes"], two["result"]["n_devices"]) == (2, 2)
    assert main([*two["args"], "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "result.json").read_text())
    assert one["n_processes"] == 1
    assert abs(one["energy"] - two["result"]["energy"]) < SAME
