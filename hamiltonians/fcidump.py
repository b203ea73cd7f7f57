"""FCIDUMP files read with numpy alone (no PySCF: a GPU machine may lack its DFT libraries).

The format (Knowles & Handy 1989): a namelist header ``&FCI NORB=n, NELEC=N, MS2=2S, ... &END``
(or ``/``), then one line ``value i j k l`` per integral, indices 1-based:
``i j k l > 0``: the chemists'-notation two-electron integral (ij|kl), one of its 8 equal
permutations; ``i j > 0, k = l = 0``: the one-electron h_ij (h_ji equal); all zero: the core
energy; ``i > 0, j = k = l = 0``: an orbital energy (ignored).
"""

from __future__ import annotations

import re

import numpy as np

_KEY = re.compile(r"([A-Za-z0-9_]+)\s*=\s*([^=]*?)(?=\s*(?:,\s*)?[A-Za-z0-9_]+\s*=|$)", re.S)


def _split_header(text: str) -> tuple[dict[str, str], str]:
    """``({KEY: raw value}, integral lines)``; ValueError without a ``&FCI`` header."""
    start = text.upper().find("&FCI")
    if start < 0:
        raise ValueError("no &FCI header")
    end = re.compile(r"&END|/").search(text, start + 4)
    if end is None:
        raise ValueError("the &FCI header is not closed by &END or /")
    header = text[start + 4:end.start()]
    keys = {k.upper(): v.strip().rstrip(",").strip() for k, v in _KEY.findall(header)}
    return keys, text[end.end():]


def parse_fcidump(text: str) -> dict:
    """The contents of an FCIDUMP file as ``{"NORB", "NELEC", "MS2", "H1" [n, n],
    "H2" [n, n, n, n] (chemists' notation, all 8 permutations filled), "ECORE"}``.

    Raises ValueError on a malformed file (missing header keys, a line that is not 5 numbers,
    an index outside 0..NORB)."""
    keys, body = _split_header(text)
    n, n_elec = int(keys["NORB"]), int(keys["NELEC"])
    ms2 = int(keys.get("MS2", "0") or 0)
    if n < 1:
        return {"NORB": n, "NELEC": n_elec, "MS2": ms2, "H1": None, "H2": None, "ECORE": 0.0}
    tokens = body.replace("D", "E").replace("d", "e").split()
    if len(tokens) % 5:
        raise ValueError("integral lines must hold 5 numbers each")
    rows = np.asarray(tokens, dtype=np.float64).reshape(-1, 5)
    value, idx = rows[:, 0], rows[:, 1:].astype(np.int64)
    if np.any(idx < 0) or np.any(idx > n) or np.any(rows[:, 1:] != idx):
        raise ValueError(f"integral indices must be integers in 0..NORB={n}")
    i, j, k, l = (idx - 1).T
    two = (idx > 0).all(axis=1)
    one = (idx[:, 0] > 0) & (idx[:, 1] > 0) & (idx[:, 2] == 0) & (idx[:, 3] == 0)
    core = (idx == 0).all(axis=1)
    h1 = np.zeros((n, n))
    h1[i[one], j[one]] = value[one]
    h1[j[one], i[one]] = value[one]
    h2 = np.zeros((n, n, n, n))
    a, b, c, d, v = i[two], j[two], k[two], l[two], value[two]
    for p, q, r, s in ((a, b, c, d), (b, a, c, d), (a, b, d, c), (b, a, d, c)):
        h2[p, q, r, s] = v
        h2[r, s, p, q] = v
    return {"NORB": n, "NELEC": n_elec, "MS2": ms2, "H1": h1, "H2": h2,
            "ECORE": float(value[core].sum())}
