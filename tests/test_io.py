"""Run I/O: JSON-lines log, atomic checkpoints, result files, convergence plot."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nqs.errors import CheckpointError
from nqs.io import (
    JsonlLogger,
    load_checkpoint,
    load_checkpoint_metadata,
    read_jsonl,
    save_checkpoint,
    write_json_atomic,
)


def _tree():
    return {
        "params": {
            "w": jnp.asarray(np.arange(6).reshape(2, 3) * (1 + 0.5j), dtype=jnp.complex128),
            "b": jnp.linspace(0.0, 1.0, 4),
        },
        "counts": np.arange(5, dtype=np.int32),
        "key": jax.random.PRNGKey(7),  # raw uint32 key
        "typed_key": jax.random.key(3),
        "step": 12,
        "opt": [jnp.zeros(3), (jnp.ones(()), 2.5)],
    }


def _assert_tree_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checkpoint_round_trip(tmp_path):
    tree = _tree()
    path = tmp_path / "ckpt" / "state.msgpack"
    save_checkpoint(path, tree, {"step": 12, "seed": 0, "bad": float("nan")})
    target = jax.tree_util.tree_map(lambda x: x, tree)
    restored, meta = load_checkpoint(path, target)
    _assert_tree_equal(restored, tree)
    assert restored["params"]["w"].dtype == jnp.complex128
    assert restored["key"].dtype == jnp.uint32
    assert isinstance(restored["step"], int) and restored["step"] == 12
    assert isinstance(restored["counts"], np.ndarray)
    # The typed key still works as a key and gives the same numbers.
    np.testing.assert_array_equal(
        jax.random.normal(restored["typed_key"], (3,)), jax.random.normal(tree["typed_key"], (3,))
    )
    assert meta == {"step": 12, "seed": 0, "bad": None}
    assert load_checkpoint_metadata(path) == meta
    assert [p.name for p in path.parent.iterdir()] == ["state.msgpack"]  # no temp files left


def test_checkpoint_crash_keeps_old(tmp_path, monkeypatch):
    path = tmp_path / "state.msgpack"
    tree = _tree()
    save_checkpoint(path, tree, {"step": 1})
    newer = dict(tree, step=99)

    def boom(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, newer, {"step": 2})
    monkeypatch.undo()
    restored, meta = load_checkpoint(path, tree)
    assert meta == {"step": 1}
    assert restored["step"] == 12
    assert [p.name for p in tmp_path.iterdir()] == ["state.msgpack"]


def test_checkpoint_errors(tmp_path):
    tree = _tree()
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.msgpack", tree)
    garbage = tmp_path / "garbage.msgpack"
    garbage.write_bytes(b"\x00\x01not msgpack at all")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(garbage, tree)
    path = tmp_path / "state.msgpack"
    save_checkpoint(path, tree, {})
    wrong_shape = dict(tree, counts=np.arange(6, dtype=np.int32))
    with pytest.raises(CheckpointError, match="does not match") as info:
        load_checkpoint(path, wrong_shape)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="missing entry"):
        load_checkpoint(path, dict(tree, extra=jnp.zeros(2)))
    with pytest.raises(CheckpointError, match="unexpected entry"):
        load_checkpoint(path, {k: v for k, v in tree.items() if k != "step"})


def test_logger_flush_and_types(tmp_path):
    path = tmp_path / "log.jsonl"
    logger = JsonlLogger(path)
    logger.append({"step": 0, "energy": np.float64(-1.5), "err": jnp.asarray(0.25)})
    # Readable while the logger is still open.
    assert read_jsonl(path) == [{"step": 0, "energy": -1.5, "err": 0.25}]
    logger.append({"step": np.int64(1), "energy": float("nan"), "inf": np.inf, "c": 1 + 2j, "v": np.ones(2)})
    records = read_jsonl(path)
    assert records[1] == {
        "step": 1,
        "energy": None,
        "inf": None,
        "c": {"real": 1.0, "imag": 2.0},
        "v": [1.0, 1.0],
    }
    logger.close()
    for line in path.read_text().splitlines():
        json.loads(line)  # strict JSON (no NaN tokens)
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


def test_logger_truncates_on_resume(tmp_path):
    path = tmp_path / "log.jsonl"
    with JsonlLogger(path) as logger:
        logger.append({"event": "start"})
        for step in range(10):
            logger.append({"step": step, "energy": -float(step)})
    # Simulate a crash in the middle of a write.
    with open(path, "a") as f:
        f.write('{"step": 10, "ener')
    assert len(read_jsonl(path)) == 11  # the partial line is ignored
    with JsonlLogger(path, truncate_after_step=6) as logger:
        assert [r.get("step") for r in read_jsonl(path)] == [None, 0, 1, 2, 3, 4, 5]
        logger.append({"step": 6, "energy": -6.0})
    steps = [r["step"] for r in read_jsonl(path) if "step" in r]
    assert steps == list(range(7))
    # Reopening without truncation keeps everything and appends.
    with JsonlLogger(path) as logger:
        logger.append({"step": 7})
    assert [r.get("step") for r in read_jsonl(path)][-2:] == [6, 7]


def test_write_json_atomic(tmp_path):
    path = tmp_path / "out" / "result.json"
    write_json_atomic(path, {"energy": np.float64(-2.0), "error": float("inf"), "n": np.int32(3)})
    text = path.read_text()
    assert json.loads(text) == {"energy": -2.0, "error": None, "n": 3}
    assert text.startswith("{\n  ")


def test_plot_convergence(tmp_path):
    from nqs.plotting import plot_convergence

    history = [{"step": i, "energy": -1.0 - 0.9**i, "energy_error": 0.01 * 0.95**i} for i in range(50)]
    history.insert(0, {"event": "start"})
    path = plot_convergence(history, -1.0, tmp_path / "plots" / "conv.png", title="test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    cols = {"step": np.arange(5), "energy": np.linspace(-1, -2, 5)}
    path2 = plot_convergence(cols, None, tmp_path / "conv2.png")
    assert path2.stat().st_size > 1000


def test_read_jsonl_archived_gzip(tmp_path):
    """An archived run keeps its log as log.jsonl.gz; reading log.jsonl finds it."""
    import gzip

    path = tmp_path / "log.jsonl"
    with JsonlLogger(path) as logger:
        for step in range(3):
            logger.append({"step": step, "energy": -float(step)})
    records = read_jsonl(path)
    (tmp_path / "log.jsonl.gz").write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    assert read_jsonl(path) == records and len(records) == 3
    assert read_jsonl(tmp_path / "other.jsonl") == []
