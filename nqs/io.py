"""Run I/O: JSON-lines logs, atomic checkpoints and result files.

Everything written here survives an interruption: log lines are flushed and fsync'ed one at a
time, and checkpoints / result files are written to a temporary file in the same directory,
fsync'ed and moved into place with :func:`os.replace` (atomic on POSIX), so a reader sees
either the old file or the new one, never a partial one.

JSON conventions (logs and result files): numpy / JAX scalars become Python numbers, arrays
become (nested) lists, non-finite floats become ``null`` and complex numbers become
``{"real": x, "imag": y}``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

import nqs  # noqa: F401  (enables float64)
from nqs.errors import CheckpointError

PathLike = str | os.PathLike[str]

_FORMAT = "nqs-checkpoint"
_FORMAT_VERSION = 2  # 2: the state as bytes beside their SHA-256 (1: no checksum; readable)


# --------------------------------------------------------------------------------------------
# JSON helpers


def _float_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` (dicts, lists, numpy/JAX arrays and scalars, paths) to JSON-able data."""
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return _float_or_none(obj)
    if isinstance(obj, complex):
        return {"real": _float_or_none(obj.real), "imag": _float_or_none(obj.imag)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.generic | np.ndarray | jax.Array):
        arr = np.asarray(obj)
        if arr.dtype == np.bool_:
            return arr.tolist()
        if arr.ndim == 0:
            return to_jsonable(arr.item())
        return [to_jsonable(v) for v in arr]
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def _dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(obj), allow_nan=False, indent=indent)


# --------------------------------------------------------------------------------------------
# Atomic files


def _fsync_dir(directory: Path) -> None:
    """Best-effort fsync of a directory so a rename is durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_mode() -> int:
    """The mode of the files nqs writes: ``0o666`` less the process umask (0644 under the
    usual umask 022), as ``open()`` would give; temporary files are 0600 until renamed."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + os.replace),
    with the mode of :func:`file_mode` (0644 under the usual umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (non-finite floats -> null) atomically."""
    write_bytes_atomic(path, (_dumps(obj, indent=2) + "\n").encode())


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode())


def save_figure_atomic(fig: Any, path: PathLike, **kwargs: Any) -> None:
    """``fig.savefig`` (a matplotlib figure; format from the suffix) written atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **kwargs)
    write_bytes_atomic(path, buf.getvalue())


# --------------------------------------------------------------------------------------------
# JSON-lines log


def read_jsonl(path: PathLike) -> list[dict[str, Any]]:
    """All records of a JSON-lines file; a truncated last line (an interrupted write) is skipped.

    A missing file gives ``[]``, unless ``path.gz`` exists beside it (an archived run's log,
    gzip-compressed to keep the repository small): that is read instead. A malformed line
    elsewhere raises ``ValueError``.
    """
    path = Path(path)
    archived = path.with_name(path.name + ".gz")
    if path.exists():
        text = path.read_text()
    elif archived.exists():
        text = gzip.decompress(archived.read_bytes()).decode()
    else:
        return []
    lines = text.split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:  # no trailing newline: a partial final write
                break
            raise ValueError(f"{path}:{i + 1}: malformed JSON line: {e}") from None
    return records


class JsonlLogger:
    """Append-only JSON-lines log; every record is flushed and fsync'ed.

    ``JsonlLogger(path, truncate_after_step=k)`` (for a run resumed at step ``k``) first drops
    the records with ``step >= k`` so the resumed log has no duplicates; records without a
    ``step`` are kept. A partial last line left by an interrupted write is always dropped.
    Usable as a context manager.
    """

    def __init__(self, path: PathLike, truncate_after_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            text = self.path.read_text()
            clean = text if (not text or text.endswith("\n")) else text[: text.rfind("\n") + 1]
            if truncate_after_step is not None:
                kept = [
                    r
                    for r in read_jsonl(self.path)
                    if not (isinstance(r, dict) and _step_of(r) >= truncate_after_step)
                ]
                clean = "".join(_dumps(r) + "\n" for r in kept)
            if clean != text:
                write_bytes_atomic(self.path, clean.encode())
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as a JSON line, flush and fsync."""
        if self._file is None:
            raise ValueError(f"logger for {self.path} is closed")
        line = _dumps(dict(record))
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _step_of(record: Mapping[str, Any]) -> float:
    step = record.get("step")
    return float(step) if isinstance(step, int | float) else -math.inf


# --------------------------------------------------------------------------------------------
# Checkpoints


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _flat_with_names(tree: Any) -> tuple[list[str], list[Any], Any]:
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    names = [jax.tree_util.keystr(p) or "<root>" for p, _ in leaves_with_path]
    return names, [leaf for _, leaf in leaves_with_path], treedef


def _to_numpy(leaf: Any) -> np.ndarray:
    if _is_key(leaf):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


def save_checkpoint(path: PathLike, tree: Any, metadata: Mapping[str, Any] | None = None) -> None:
    """Save a pytree of arrays / scalars and JSON-able ``metadata`` to ``path`` atomically.

    Leaves may be any numpy / JAX arrays (complex and integer included), Python scalars, or typed
    PRNG keys (stored as their ``key_data``). Entries are named by their pytree key path, and
    :func:`load_checkpoint` restores them into a target tree of the same structure.
    """
    names, leaves, _ = _flat_with_names(tree)
    arrays = {}
    for name, leaf in zip(names, leaves, strict=True):
        try:
            arrays[name] = _to_numpy(leaf)
        except Exception as e:
            raise TypeError(f"cannot checkpoint leaf {name} of type {type(leaf).__name__}") from e
        if arrays[name].dtype == object:
            raise TypeError(f"cannot checkpoint leaf {name} of type {type(leaf).__name__}")
    state = {
        "format": _FORMAT,
        "version": _FORMAT_VERSION,
        "metadata": _dumps(dict(metadata or {})),
        "names": names,
        "arrays": {str(i): a for i, a in enumerate(arrays.values())},
    }
    write_checkpoint_state(path, state)


def write_checkpoint_state(path: PathLike, state: Mapping[str, Any]) -> None:
    """Write a checkpoint's state (``format``, ``version``, ``metadata``, ``names``,
    ``arrays``) atomically: the file holds this state serialized as bytes beside their SHA-256
    (tests use it to write edited checkpoints)."""
    inner = {k: v for k, v in state.items() if k not in ("sha256", "version", "format")}
    payload = serialization.msgpack_serialize(inner)
    outer = {"format": _FORMAT, "version": _FORMAT_VERSION,
             "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}
    write_bytes_atomic(path, serialization.msgpack_serialize(outer))


def read_checkpoint_state(path: PathLike) -> dict[str, Any]:
    """The state of a checkpoint (``metadata``, ``names``, ``arrays``, ...), its checksum
    verified (raises :class:`CheckpointError`)."""
    return _read_state(path)


def _read_state(path: PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable: {msg}") from None
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise CheckpointError(f"checkpoint {path} is unreadable: not an nqs checkpoint")
    version = state.get("version")
    if version == 1 and set(state) == {"format", "version", "metadata", "names", "arrays"}:
        return state  # written before checksums
    if version != _FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}, expected {_FORMAT_VERSION}"
        )
    payload = state.get("payload")
    if (not isinstance(payload, bytes) or set(state) != {"format", "version", "sha256", "payload"}
            or state.get("sha256") != hashlib.sha256(payload).hexdigest()):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its checksum does not match its contents "
            "(a damaged or edited file); resume an intact copy or start a new run"
        )
    try:
        inner = serialization.msgpack_restore(payload)
    except Exception:
        raise CheckpointError(f"checkpoint {path} is unreadable: corrupt payload") from None
    if not isinstance(inner, dict):
        raise CheckpointError(f"checkpoint {path} is unreadable: corrupt payload")
    return {"format": _FORMAT, "version": _FORMAT_VERSION, **inner}


def require_finite(tree: Any, path: PathLike, what: str) -> None:
    """Raise :class:`CheckpointError` if a floating-point leaf of ``tree`` (restored from the
    checkpoint ``path``) holds a NaN or an infinity: a run resumed from it would reject every
    step and end with a NaN energy. ``what`` names the tree in the message (``"parameters"``).
    """
    names, leaves, _ = _flat_with_names(tree)
    for name, leaf in zip(names, leaves, strict=True):
        if _is_key(leaf):
            continue
        value = np.asarray(leaf)
        if np.issubdtype(value.dtype, np.inexact) and not np.all(np.isfinite(value)):
            raise CheckpointError(
                f"checkpoint {path} holds non-finite {what} (NaN or inf in {name}); "
                "it cannot be resumed: start a new run or resume an earlier copy"
            )


def load_checkpoint_metadata(path: PathLike) -> dict[str, Any]:
    """Only the metadata of a checkpoint (raises :class:`CheckpointError`)."""
    return json.loads(_read_state(path)["metadata"])


def load_checkpoint_entries(path: PathLike, target_tree: Any) -> tuple[Any, dict[str, Any]]:
    """:func:`load_checkpoint` of only the entries of ``target_tree`` (a part of the saved
    tree, with the same key paths; other saved entries are ignored), e.g. the parameters and
    walkers of a run without its optimizer state."""
    state = _read_state(path)
    wanted = set(_flat_with_names(target_tree)[0])
    try:
        keep = [i for i, name in enumerate(state["names"]) if name in wanted]
        sub = dict(state, names=[state["names"][i] for i in keep],
                   arrays={str(j): state["arrays"][str(i)] for j, i in enumerate(keep)})
    except Exception:
        raise CheckpointError(f"checkpoint {path} is unreadable: corrupt index") from None
    return _restore(path, sub, target_tree)


def load_checkpoint(path: PathLike, target_tree: Any) -> tuple[Any, dict[str, Any]]:
    """Restore ``(tree, metadata)`` from ``path`` into the structure of ``target_tree``.

    Every leaf must be present with the target's shape and dtype (typed PRNG keys are rebuilt
    with the target key's implementation; JAX leaves come back as JAX arrays, numpy leaves as
    numpy arrays, Python scalars as Python scalars). Raises :class:`CheckpointError` (one-line
    message) when the file is missing, unreadable or does not match ``target_tree``.
    """
    return _restore(path, _read_state(path), target_tree)


def _restore(path: PathLike, state: dict[str, Any], target_tree: Any) -> tuple[Any, dict[str, Any]]:
    try:
        arrays = state["arrays"]
        saved = {name: arrays[str(i)] for i, name in enumerate(state["names"])}
        metadata = json.loads(state["metadata"])
    except Exception:
        raise CheckpointError(f"checkpoint {path} is unreadable: corrupt index") from None
    names, targets, treedef = _flat_with_names(target_tree)
    extra = sorted(set(saved) - set(names))
    if extra:
        raise CheckpointError(
            f"checkpoint {path} does not match the expected state: unexpected entry {extra[0]}"
        )
    leaves = []
    for name, target in zip(names, targets, strict=True):
        if name not in saved:
            raise CheckpointError(
                f"checkpoint {path} does not match the expected state: missing entry {name}"
            )
        value = np.asarray(saved[name])
        want = _to_numpy(target)
        if value.shape != want.shape or value.dtype != want.dtype:
            raise CheckpointError(
                f"checkpoint {path} does not match the expected state: entry {name} is "
                f"{value.dtype}{list(value.shape)}, expected {want.dtype}{list(want.shape)}"
            )
        if _is_key(target):
            leaves.append(jax.random.wrap_key_data(value, impl=jax.random.key_impl(target)))
        elif isinstance(target, jax.Array):
            leaves.append(jnp.asarray(value))
        elif isinstance(target, np.ndarray | np.generic):
            leaves.append(value if isinstance(target, np.ndarray) else value[()])
        elif isinstance(target, bool | int | float | complex):
            leaves.append(type(target)(value.item()))
        else:
            leaves.append(value)
    return jax.tree_util.tree_unflatten(treedef, leaves), metadata
