"""The one in-memory representation of a Gaussian splat scene.

Every reader returns a :class:`SplatSet` and every writer takes one. Arrays are stored the way 3DGS
trainers optimise them (log-scales, opacity logits, SH coefficients), so a lossless format
round-trips bit-exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .sh import SH_C0

# Number of SH "rest" coefficients per colour channel for each degree.
SH_REST_COUNT = {0: 0, 1: 3, 2: 8, 3: 15}


def sh_degree_for_rest_count(k: int) -> int:
    for degree, count in SH_REST_COUNT.items():
        if count == k:
            return degree
    raise ValueError(f"{k} SH rest coefficients per channel match no SH degree (0, 3, 8 or 15 expected)")


@dataclass
class SplatSet:
    """N Gaussians. All arrays are float32 and C-contiguous.

    means      (N, 3)    world-space centres
    scales     (N, 3)    natural-log standard deviations along the local axes
    quats      (N, 4)    rotations, w x y z: unit from the lossy formats, as stored from PLY (trainers
                         write them unnormalised; every renderer normalises), so normalise before use
    opacities  (N,)      opacity logits (sigmoid gives alpha)
    sh_dc      (N, 3)    degree-0 SH coefficients (colour = 0.5 + SH_C0 * sh_dc)
    sh_rest    (N, K, 3) higher SH bands, K in {0, 3, 8, 15}, coefficient-major then RGB
    extras     name -> (N,) arrays of any other per-splat property, kept on round trips
    """

    means: np.ndarray
    scales: np.ndarray
    quats: np.ndarray
    opacities: np.ndarray
    sh_dc: np.ndarray
    sh_rest: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.means)
        shapes = {
            "means": (n, 3),
            "scales": (n, 3),
            "quats": (n, 4),
            "opacities": (n,),
            "sh_dc": (n, 3),
        }
        for name, shape in shapes.items():
            value = getattr(self, name)
            if value.shape != shape:
                raise ValueError(f"SplatSet.{name} has shape {value.shape}, expected {shape}")
        if self.sh_rest.ndim != 3 or self.sh_rest.shape[0] != n or self.sh_rest.shape[2] != 3:
            raise ValueError(f"SplatSet.sh_rest has shape {self.sh_rest.shape}, expected ({n}, K, 3)")
        sh_degree_for_rest_count(self.sh_rest.shape[1])
        for name, value in self.extras.items():
            if value.shape != (n,):
                raise ValueError(f"SplatSet extra '{name}' has shape {value.shape}, expected ({n},)")

    def __len__(self) -> int:
        return len(self.means)

    @property
    def sh_degree(self) -> int:
        return sh_degree_for_rest_count(self.sh_rest.shape[1])

    @classmethod
    def empty(cls, n: int = 0, sh_degree: int = 0) -> SplatSet:
        f = np.float32
        quats = np.zeros((n, 4), f)
        quats[:, 0] = 1.0
        return cls(
            means=np.zeros((n, 3), f),
            scales=np.zeros((n, 3), f),
            quats=quats,
            opacities=np.zeros(n, f),
            sh_dc=np.zeros((n, 3), f),
            sh_rest=np.zeros((n, SH_REST_COUNT[sh_degree], 3), f),
        )

    def subset(self, index) -> SplatSet:
        """The splats selected by a boolean mask or an index array."""
        return SplatSet(
            means=self.means[index],
            scales=self.scales[index],
            quats=self.quats[index],
            opacities=self.opacities[index],
            sh_dc=self.sh_dc[index],
            sh_rest=self.sh_rest[index],
            extras={k: v[index] for k, v in self.extras.items()},
        )

    def with_sh_degree(self, degree: int) -> SplatSet:
        """A copy truncated (or zero-padded) to ``degree`` SH bands."""
        k = SH_REST_COUNT[degree]
        rest = np.zeros((len(self), k, 3), np.float32)
        keep = min(k, self.sh_rest.shape[1])
        rest[:, :keep] = self.sh_rest[:, :keep]
        return SplatSet(self.means, self.scales, self.quats, self.opacities, self.sh_dc, rest, dict(self.extras))

    def colors(self) -> np.ndarray:
        """Degree-0 colour in [0, 1] (display-referred sRGB, as the trainers treat it)."""
        return np.clip(0.5 + SH_C0 * self.sh_dc, 0.0, 1.0)

    def nonfinite(self) -> str:
        """Where NaN or Inf values are ("" when there are none): the first offending splat per array."""
        found = []
        for name in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"):
            values = getattr(self, name).reshape(len(self), -1)
            # NaN and Inf survive a sum, so one fast reduction clears the usual all-finite case
            # (huge finite values may overflow it: the exact check below then decides).
            with np.errstate(over="ignore", invalid="ignore"):
                if values.size == 0 or np.isfinite(values.sum()):
                    continue
            ok = np.isfinite(values).all(axis=1)
            if not ok.all():
                bad = np.flatnonzero(~ok)
                found.append(f"{name} of {len(bad)} splat(s), first #{bad[0]}")
        return "; ".join(found)

    def alphas(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.opacities))
