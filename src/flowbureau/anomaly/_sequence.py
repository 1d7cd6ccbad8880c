"""Index helpers over rows sorted by sequence (account) and position: neighbours in the same
sequence without leaving integer types (no float round trip for money)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["lag_index", "sequence_codes"]


def sequence_codes(sequence_ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Integer codes of consecutive equal ids (rows must be grouped by sequence)."""
    ids = np.asarray(sequence_ids, dtype=object)
    if not len(ids):
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[True, ids[1:] != ids[:-1]]
    return np.cumsum(starts).astype(np.int64) - 1


def lag_index(codes: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
    """Row index ``k`` rows earlier (``k`` < 0: later) in the same sequence, else -1."""
    n = len(codes)
    rows = np.arange(n, dtype=np.int64)
    other = rows - k
    inside = (other >= 0) & (other < n)
    result = np.full(n, -1, dtype=np.int64)
    result[inside] = other[inside]
    same = np.zeros(n, dtype=bool)
    same[inside] = codes[other[inside]] == codes[inside]
    result[~same] = -1
    return result
