"""Helpers the lossy formats share: activations, quaternion normalisation, smallest-three packing."""
from __future__ import annotations

import numpy as np

# The 8-bit alpha of the lossy formats cannot say 0 or 1; decoding clamps to half a step inside so the
# opacity logit stays finite.
ALPHA_EPS = 0.5 / 255.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(1000) is inf, and 1 / (1 + inf) the 0 it should be
        return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def logit(alpha: np.ndarray) -> np.ndarray:
    a = np.clip(np.asarray(alpha, np.float64), ALPHA_EPS, 1.0 - ALPHA_EPS)
    return np.log(a / (1.0 - a))


def unit_quats(q: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32 stays float32); a zero row becomes (1, 0, 0, 0)."""
    q = np.asarray(q)
    if q.dtype.kind != "f":
        q = q.astype(np.float64)
    norm = np.sqrt(np.einsum("ij,ij->i", q, q))[:, None]
    out = np.divide(q, norm, out=np.zeros_like(q), where=norm > 0)
    out[norm[:, 0] == 0, 0] = 1
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def unorm(t: np.ndarray, bits: int) -> np.ndarray:
    """Values in [0, 1] to ``bits``-bit integers (rounded), as uint32."""
    top = (1 << bits) - 1
    return np.clip(np.floor(np.asarray(t) * top + 0.5), 0, top).astype(np.uint32)


# For each index of the largest component: where the other three sit, and where each output
# component comes from in (others..., largest).
_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
_REBUILD = np.array([[3, 0, 1, 2], [0, 3, 1, 2], [0, 1, 3, 2], [0, 1, 2, 3]])


def smallest_three(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit quaternions as (index of the largest |component|, the other three in order).

    The sign is chosen so the dropped component is positive (q and -q are the same rotation), which
    lets the decoder rebuild it as sqrt(1 - sum of squares).
    """
    largest = np.argmax(np.abs(q), axis=1)
    sign = np.where(np.take_along_axis(q, largest[:, None], axis=1) < 0, -1, 1).astype(q.dtype)
    return largest, np.take_along_axis(q, _OTHERS[largest], axis=1) * sign


def from_smallest_three(largest: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Inverse of :func:`smallest_three`: unit quaternions in the dtype of ``others``."""
    rebuilt = np.sqrt(np.maximum(0, 1 - np.einsum("ij,ij->i", others, others)))
    full = np.concatenate([others, rebuilt[:, None].astype(others.dtype)], axis=1)
    return unit_quats(np.take_along_axis(full, _REBUILD[largest], axis=1))
