"""The ``DiscreteOperator`` members of an operator whose connections come from precomputed
tables (``self._tables``: ``max_conn``, ``max_flips``, ``flips``, and ``row_components`` for
stacked operators), shared by the Pauli and fermion operators."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


class TabledOperator:
    """``max_conn``, ``max_flips`` and ``flips`` served by ``self._tables``."""

    _tables: Any

    @property
    def max_conn(self) -> int:
        """Rows of ``flips`` (one per term, all components; at least 1)."""
        return self._tables.max_conn

    @property
    def max_flips(self) -> int:
        """Most distinct sites one term changes (at least 1)."""
        return self._tables.max_flips

    def flips(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(sites int32 [max_conn, max_flips], mels [max_conn])`` of one configuration ``x``;
        for stacked operators row ``r`` belongs to component ``row_components[r]``."""
        return self._tables.flips(x)


class TabledComponents(TabledOperator):
    """``K`` stacked operators (``self.operators``) as one with ``[K]`` local values."""

    operators: tuple

    @property
    def n_components(self) -> int:
        """Number of stacked operators ``K``."""
        return len(self.operators)

    @property
    def row_components(self) -> np.ndarray:
        """Component ``k`` of every row of ``flips``, int ``[max_conn]``."""
        return self._tables.row_components
