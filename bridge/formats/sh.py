"""Real spherical harmonics of degrees 0-3 in the basis, order and signs of 3DGS and gsplat.

One definition for every user: the rasterizer (torch tensors), the export transform (numpy arrays)
and the add-on's preview material (the constants). :func:`sh_terms` is plain arithmetic, so it works
on numpy arrays and torch tensors alike.
"""
from __future__ import annotations

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_terms(x, y, z, degree: int) -> list:
    """Basis functions of bands 1..``degree`` at the unit direction (x, y, z), in storage order.

    The DC term (a constant ``SH_C0``) is left out: callers add it in their own array type.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree {degree} is not supported (0 to 3)")
    terms = []
    if degree >= 1:
        terms += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        terms += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        terms += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return terms
