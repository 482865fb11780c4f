"""Helpers the lossy formats share: activations, quaternion normalisation, smallest-three packing."""
from __future__ import annotations

import numpy as np

# The 8-bit alpha of the lossy formats cannot say 0 or 1; decoding clamps to half a step inside so the
# opacity logit stays finite.
ALPHA_EPS = 0.5 / 255.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def logit(alpha: np.ndarray) -> np.ndarray:
    a = np.clip(np.asarray(alpha, np.float64), ALPHA_EPS, 1.0 - ALPHA_EPS)
    return np.log(a / (1.0 - a))


def unit_quats(q: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64; a zero row becomes the identity (first component 1)."""
    q = np.asarray(q, np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    out = np.divide(q, norm, out=np.zeros_like(q), where=norm > 0)
    out[norm[:, 0] == 0, 0] = 1.0
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def unorm(t: np.ndarray, bits: int) -> np.ndarray:
    """Values in [0, 1] to ``bits``-bit integers (rounded), as uint32."""
    top = (1 << bits) - 1
    return np.clip(np.floor(np.asarray(t, np.float64) * top + 0.5), 0, top).astype(np.uint32)


def smallest_three(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit quaternions as (index of the largest |component|, the other three in order).

    The sign is chosen so the dropped component is positive (q and -q are the same rotation), which
    lets the decoder rebuild it as sqrt(1 - sum of squares).
    """
    largest = np.argmax(np.abs(q), axis=1)
    rows = np.arange(len(q))
    q = q * np.where(q[rows, largest] < 0, -1.0, 1.0)[:, None]
    keep = np.ones(q.shape, bool)
    keep[rows, largest] = False
    return largest, q[keep].reshape(len(q), 3)


def from_smallest_three(largest: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Inverse of :func:`smallest_three`, float64 unit quaternions."""
    n = len(largest)
    q = np.empty((n, 4), np.float64)
    rows = np.arange(n)
    keep = np.ones((n, 4), bool)
    keep[rows, largest] = False
    q[keep] = others.reshape(-1)
    q[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - np.square(others).sum(axis=1)))
    return unit_quats(q)
