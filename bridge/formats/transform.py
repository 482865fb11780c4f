"""Baking an object transform into splats: means, rotations, scales and the spherical harmonics.

An object in Blender shows its splats through ``matrix_world``; a file written for another tool has
no such matrix, so the transform must be folded into every splat. Positions and covariances are easy
(``A Σ Aᵀ``). View-dependent colour is the subtle part: a splat seen along world direction ``d`` must
show the colour it had along ``A⁻¹d`` (normalised). For a rotation, each SH band is closed under
rotation, so the new coefficients are an exact linear map of the old ones (the real-SH rotation
matrix of the band, i.e. a real Wigner D-matrix). A non-uniform scale warps directions in a way no
finite SH band can express, so it is refused when the splats carry view-dependent colour.

numpy only: the add-on (export) and the bridge (render passes) both use it.
"""
from __future__ import annotations

import os

import numpy as np

from .errors import FormatError
from .sh import sh_terms
from .splatset import SplatSet

# Relative spread of the singular values below which a scale counts as uniform: Blender users type
# scales like 1.0001 by accident; the geometric error from treating those as uniform is negligible.
UNIFORM_SCALE_RTOL = 1e-4



def sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """Real SH basis of bands 1..``degree`` at unit directions ``dirs`` (N, 3): (N, (degree+1)² - 1).

    Column ``k`` multiplies ``SplatSet.sh_rest[:, k]``; the DC band is left out (it never rotates).
    """
    x, y, z = (np.asarray(dirs, np.float64)[:, i] for i in range(3))
    cols = sh_terms(x, y, z, degree)
    return np.stack(cols, axis=1) if cols else np.zeros((len(x), 0))


def _sample_directions(n: int = 64) -> np.ndarray:
    """Evenly spread unit directions (a Fibonacci sphere): deterministic and well conditioned."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - z * z)
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def sh_rotation(rotation: np.ndarray, degree: int) -> list[np.ndarray]:
    """Per band l = 1..``degree``, the (2l+1)² matrix D with ``D @ c`` the coefficients of the rotated function.

    "Rotated" means: evaluating the new coefficients along ``d`` gives what the old ones gave along
    ``rotationᵀ d``. Each band is mapped onto itself by a rotation, so D is pinned down exactly by
    the band's values at a few generic directions; least squares over 64 evenly spread directions
    keeps it at machine precision (and orthogonal) without a hand-written recursion per band.
    """
    rot = np.asarray(rotation, np.float64)
    dirs = _sample_directions()
    basis = sh_basis(dirs, degree)
    rotated = sh_basis(dirs @ rot, degree)  # row p -> Y(rotᵀ p)
    mats = []
    for band in range(1, degree + 1):
        cols = slice(band * band - 1, (band + 1) * (band + 1) - 1)
        solution, *_ = np.linalg.lstsq(basis[:, cols], rotated[:, cols], rcond=None)
        mats.append(solution)
    return mats


def _sh_block_matrix(rotation: np.ndarray, degree: int, mirrored: bool = False) -> np.ndarray:
    """All bands' rotation matrices as one block-diagonal (K, K) matrix; a mirror also negates the odd
    bands (every real SH of band l has parity (-1)^l)."""
    k = (degree + 1) ** 2 - 1
    out = np.zeros((k, k))
    for band, mat in enumerate(sh_rotation(rotation, degree), start=1):
        cols = slice(band * band - 1, (band + 1) * (band + 1) - 1)
        out[cols, cols] = -mat if mirrored and band % 2 else mat
    return out


def rotate_sh(sh_rest: np.ndarray, rotation: np.ndarray, mirrored: bool = False) -> np.ndarray:
    """``sh_rest`` (N, K, 3) of splats turned by ``rotation`` (3x3, proper), then mirrored through the
    origin when asked; same dtype as the input (float32 stays float32: a million splats' SH in one
    matrix product rather than a float64 copy)."""
    rest = np.asarray(sh_rest)
    if not np.issubdtype(rest.dtype, np.floating):
        rest = rest.astype(np.float64)
    n, k, _ = rest.shape
    if k == 0:
        return rest.copy()
    degree = {3: 1, 8: 2, 15: 3}[k]
    block = _sh_block_matrix(rotation, degree, mirrored)
    # One (N, 3K) x (3K, 3K) product on the rows as stored (coefficient-major, then RGB): the block
    # applied to each colour channel is kron(block, I3), so BLAS does the work with no transposed copies.
    full = np.kron(block, np.eye(3)).T.astype(rest.dtype)
    return (np.ascontiguousarray(rest).reshape(n, 3 * k) @ full).reshape(n, k, 3)


def quat_to_matrix(quats: np.ndarray) -> np.ndarray:
    """Unit (or unnormalised) w x y z quaternions (N, 4) -> rotation matrices (N, 3, 3), float64."""
    q = np.asarray(quats, np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        axis=1,
    ).reshape(-1, 3, 3)


def matrix_to_quat(mats: np.ndarray) -> np.ndarray:
    """Rotation matrices (N, 3, 3) -> unit w x y z quaternions (N, 4) with w >= 0, float64.

    Shepperd's method: each row picks the largest of the four squared components to divide by, so no
    rotation (including half turns) loses precision.
    """
    m = np.asarray(mats, np.float64).reshape(-1, 3, 3)
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    diag = np.stack([trace, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    pick = np.argmax(diag, axis=1)
    q = np.empty((len(m), 4))
    for case in range(4):
        sel = pick == case
        if not sel.any():
            continue
        a = m[sel]
        if case == 0:
            s = 2.0 * np.sqrt(1.0 + trace[sel])
            q[sel] = np.stack([0.25 * s, (a[:, 2, 1] - a[:, 1, 2]) / s, (a[:, 0, 2] - a[:, 2, 0]) / s,
                               (a[:, 1, 0] - a[:, 0, 1]) / s], axis=1)
        elif case == 1:
            s = 2.0 * np.sqrt(1.0 + a[:, 0, 0] - a[:, 1, 1] - a[:, 2, 2])
            q[sel] = np.stack([(a[:, 2, 1] - a[:, 1, 2]) / s, 0.25 * s, (a[:, 0, 1] + a[:, 1, 0]) / s,
                               (a[:, 0, 2] + a[:, 2, 0]) / s], axis=1)
        elif case == 2:
            s = 2.0 * np.sqrt(1.0 + a[:, 1, 1] - a[:, 0, 0] - a[:, 2, 2])
            q[sel] = np.stack([(a[:, 0, 2] - a[:, 2, 0]) / s, (a[:, 0, 1] + a[:, 1, 0]) / s, 0.25 * s,
                               (a[:, 1, 2] + a[:, 2, 1]) / s], axis=1)
        else:
            s = 2.0 * np.sqrt(1.0 + a[:, 2, 2] - a[:, 0, 0] - a[:, 1, 1])
            q[sel] = np.stack([(a[:, 1, 0] - a[:, 0, 1]) / s, (a[:, 0, 2] + a[:, 2, 0]) / s,
                               (a[:, 1, 2] + a[:, 2, 1]) / s, 0.25 * s], axis=1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.where(q[:, :1] < 0, -q, q)


def _quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(np.broadcast_to(a, np.broadcast_shapes(a.shape, b.shape)), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.broadcast_to(b, np.broadcast_shapes(a.shape, b.shape)), -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def _check_matrix(matrix, path) -> np.ndarray:
    m = np.asarray(matrix, np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise FormatError(path, f"the object transform must be a finite 4x4 matrix, got shape {m.shape}")
    if not np.allclose(m[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        raise FormatError(path, "the object transform has a perspective row; only affine transforms can be baked")
    if abs(np.linalg.det(m[:3, :3])) < 1e-12:
        raise FormatError(path, "the object transform has a zero scale; it would flatten every splat")
    return m


def _is_similarity(sigma: np.ndarray) -> bool:
    return bool(sigma[0] - sigma[2] <= UNIFORM_SCALE_RTOL * sigma[0])


def check_transform(splats: SplatSet, matrix, path: str | os.PathLike | None = None) -> None:
    """Raise the FormatError :func:`bake_transform` would raise, without baking anything (cheap)."""
    m = _check_matrix(matrix, path)
    sigma = np.linalg.svd(m[:3, :3], compute_uv=False)
    if not _is_similarity(sigma) and splats.sh_rest.shape[1] and np.any(splats.sh_rest):
        shown = ", ".join(f"{s:.4g}" for s in sigma)
        raise FormatError(
            path,
            f"the object's scale is non-uniform (principal scales {shown}) and the splats have "
            f"view-dependent colour (SH degree {splats.sh_degree}), which a non-uniform scale cannot "
            "carry exactly. Apply a uniform scale, or export with SH degree 0.",
        )


def bake_transform(splats: SplatSet, matrix, path: str | os.PathLike | None = None) -> SplatSet:
    """The splats as they appear through the affine ``matrix`` (4x4, e.g. an object's ``matrix_world``).

    Rotation, translation, uniform scale and mirroring are exact, SH included (a mirror flips the sign
    of the odd bands). A non-uniform scale or shear is exact for positions and shapes; it is refused
    (:class:`FormatError` naming ``path``) when the splats carry view-dependent colour, which such a
    transform cannot carry exactly.
    """
    check_transform(splats, matrix, path)
    m = np.asarray(matrix, np.float64)
    linear = m[:3, :3]
    u, sigma, vt = np.linalg.svd(linear)
    mirrored = np.linalg.det(linear) < 0
    means = np.asarray(splats.means, np.float64) @ linear.T + m[:3, 3]

    if _is_similarity(sigma):
        # A similarity: A = ±s·R with R the closest proper rotation, so the covariance is s²·R Σ Rᵀ.
        scale = float(np.cbrt(np.prod(sigma)))
        rotation = u @ vt
        if mirrored:
            rotation = -rotation
        q_rot = matrix_to_quat(rotation[None])[0]
        quats = _quat_multiply(q_rot, np.asarray(splats.quats, np.float64))
        quats /= np.linalg.norm(quats, axis=1, keepdims=True)
        scales = np.asarray(splats.scales, np.float64) + np.log(scale)
        rest = rotate_sh(splats.sh_rest, rotation, mirrored)
    else:
        # Σ' = (A R S)(A R S)ᵀ: the SVD of A R S gives the new axes and standard deviations directly,
        # better conditioned than an eigendecomposition of Σ' itself.
        axes = linear @ quat_to_matrix(splats.quats) * np.exp(np.asarray(splats.scales, np.float64))[:, None, :]
        new_axes, new_sigma, _ = np.linalg.svd(axes)
        flip = np.linalg.det(new_axes) < 0
        new_axes[flip, :, 2] *= -1.0  # an axis's sign does not change a Gaussian; keep a proper rotation
        quats = matrix_to_quat(new_axes)
        scales = np.log(np.maximum(new_sigma, 1e-30))
        rest = splats.sh_rest

    f = np.float32
    return SplatSet(
        means=np.ascontiguousarray(means, f),
        scales=np.ascontiguousarray(scales, f),
        quats=np.ascontiguousarray(quats, f),
        opacities=np.array(splats.opacities, f),
        sh_dc=np.array(splats.sh_dc, f),
        sh_rest=np.ascontiguousarray(rest, f),
        extras={k: v.copy() for k, v in splats.extras.items()},
    )


def place_splats(objects: list[tuple[str, SplatSet, np.ndarray]]) -> SplatSet:
    """Several splat sets, each baked through its own 4x4 matrix, as one set in world space.

    ``objects`` holds (label, splats, matrix); a transform that cannot be baked raises FormatError
    with its label in place of a file name. Sets of lower SH degree are zero-padded to the highest;
    extras survive only when every set has them, since a merged column must cover every splat.
    """
    if not objects:
        raise FormatError(None, "there are no splats to place")
    placed = [bake_transform(splats, matrix, label) for label, splats, matrix in objects]
    if len(placed) == 1:
        return placed[0]
    degree = max(s.sh_degree for s in placed)
    placed = [s.with_sh_degree(degree) for s in placed]
    shared = set.intersection(*(set(s.extras) for s in placed))
    return SplatSet(
        *(np.concatenate([getattr(s, name) for s in placed])
          for name in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest")),
        extras={k: np.concatenate([s.extras[k] for s in placed]) for k in sorted(shared)},
    )
