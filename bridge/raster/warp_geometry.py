"""The compiled rasterizer's per-splat kernels (NVIDIA Warp): projection and SH colours, with their backward.

The same maths as ``projection.project`` and ``sh.eval_sh`` (gsplat 1.5.3's rules: the Jacobian at the
mean clamped to the frustum widened by 30 %, eps2d, the antialiased compensation, the opacity-aware radius
and culling; 3DGS's SH basis), one thread per splat and camera instead of a graph of tensor operations,
each backward written by hand (the chain rule through the conic, the 2D and camera covariances, the
rotation from the quaternion and the normalisations). Culled splats get zeros, as the PyTorch backend's
masks give them.
"""
from __future__ import annotations

import warp as wp

wp.set_module_options({"enable_backward": False})

ALPHA_THRESHOLD = wp.constant(1.0 / 255.0)
MAX_EXTENT_SIGMAS = wp.constant(3.33)
SH_C0 = wp.constant(0.28209479177387814)
SH_C1 = wp.constant(0.4886025119029199)
C2_0 = wp.constant(1.0925484305920792)
C2_1 = wp.constant(-1.0925484305920792)
C2_2 = wp.constant(0.31539156525252005)
C2_3 = wp.constant(-1.0925484305920792)
C2_4 = wp.constant(0.5462742152960396)
C3_0 = wp.constant(-0.5900435899266435)
C3_1 = wp.constant(2.890611442640554)
C3_2 = wp.constant(-0.4570457994644658)
C3_3 = wp.constant(0.3731763325901154)
C3_4 = wp.constant(-0.4570457994644658)
C3_5 = wp.constant(1.445305721320277)
C3_6 = wp.constant(-0.5900435899266435)

vec16 = wp.types.vector(length=16, dtype=float)
mat23 = wp.types.matrix(shape=(2, 3), dtype=float)


@wp.func
def unit_quat(p: wp.vec4):
    norm = wp.sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2] + p[3] * p[3])
    return p / wp.max(norm, 1e-12), norm


@wp.func
def rotation(q: wp.vec4) -> wp.mat33:
    w = q[0]
    x = q[1]
    y = q[2]
    z = q[3]
    return wp.mat33(1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y),
                    2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x),
                    2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y))


@wp.struct
class Camera:
    rot: wp.mat33  # world to camera
    trans: wp.vec3
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    eps2d: float
    near: float
    far: float
    radius_clip: float
    antialiased: int


@wp.func
def clamp_bounds(fx: float, c: float, size: int):
    margin = 0.3 * 0.5 * float(size) / fx
    return -(c / fx + margin), (float(size) - c) / fx + margin


@wp.kernel
def project_forward(means: wp.array(dtype=wp.vec3), quats: wp.array(dtype=wp.vec4), scales: wp.array(dtype=wp.vec3),
                    opacities: wp.array(dtype=float), cam: Camera, first: int,
                    means2d: wp.array(dtype=wp.vec2), conics: wp.array(dtype=wp.vec3), depths: wp.array(dtype=float),
                    radii: wp.array(dtype=wp.vec2i), opac_out: wp.array(dtype=float)):
    i = first + wp.tid()
    mc = cam.rot * means[i] + cam.trans
    q, _norm = unit_quat(quats[i])
    rq = rotation(q)
    s = scales[i]
    m = wp.mat33(rq[0, 0] * s[0], rq[0, 1] * s[1], rq[0, 2] * s[2],
                 rq[1, 0] * s[0], rq[1, 1] * s[1], rq[1, 2] * s[2],
                 rq[2, 0] * s[0], rq[2, 1] * s[1], rq[2, 2] * s[2])
    cov_c = cam.rot * (m * wp.transpose(m)) * wp.transpose(cam.rot)
    tz = mc[2]
    in_depth = tz >= cam.near and tz <= cam.far
    z = wp.where(in_depth, tz, 1.0)
    lo_x, hi_x = clamp_bounds(cam.fx, cam.cx, cam.width)
    lo_y, hi_y = clamp_bounds(cam.fy, cam.cy, cam.height)
    tx = z * wp.clamp(mc[0] / z, lo_x, hi_x)
    ty = z * wp.clamp(mc[1] / z, lo_y, hi_y)
    jac = mat23(cam.fx / z, 0.0, -cam.fx * tx / (z * z), 0.0, cam.fy / z, -cam.fy * ty / (z * z))
    cov2d = jac * cov_c * wp.transpose(jac)
    a = cov2d[0, 0]
    b = 0.5 * (cov2d[0, 1] + cov2d[1, 0])
    c = cov2d[1, 1]
    det_orig = a * c - b * b
    a = a + cam.eps2d
    c = c + cam.eps2d
    det = a * c - b * b
    ok = in_depth and det > 0.0
    det_safe = wp.where(ok, det, 1.0)
    o = opacities[i]
    if cam.antialiased != 0:
        o = o * wp.sqrt(wp.max(det_orig / det_safe, 1e-20))
    opac_out[i] = o
    extent = wp.min(wp.sqrt(2.0 * wp.log(wp.max(o, 1e-30) / ALPHA_THRESHOLD)), MAX_EXTENT_SIGMAS)
    rx = wp.ceil(extent * wp.sqrt(wp.max(a, 0.0)))
    ry = wp.ceil(extent * wp.sqrt(wp.max(c, 0.0)))
    mx = cam.fx * mc[0] / z + cam.cx
    my = cam.fy * mc[1] / z + cam.cy
    ok = ok and o >= ALPHA_THRESHOLD and not (rx <= cam.radius_clip and ry <= cam.radius_clip)
    ok = ok and mx + rx > 0.0 and mx - rx < float(cam.width) and my + ry > 0.0 and my - ry < float(cam.height)
    if ok:
        means2d[i] = wp.vec2(mx, my)
        conics[i] = wp.vec3(c / det_safe, -b / det_safe, a / det_safe)
        depths[i] = tz
        radii[i] = wp.vec2i(int(rx), int(ry))
    else:
        means2d[i] = wp.vec2(0.0, 0.0)
        conics[i] = wp.vec3(0.0, 0.0, 0.0)
        depths[i] = 0.0
        radii[i] = wp.vec2i(0, 0)


@wp.kernel
def project_backward(means: wp.array(dtype=wp.vec3), quats: wp.array(dtype=wp.vec4), scales: wp.array(dtype=wp.vec3),
                     opacities: wp.array(dtype=float), cam: Camera, first: int, radii: wp.array(dtype=wp.vec2i),
                     g_means2d: wp.array(dtype=wp.vec2), g_conics: wp.array(dtype=wp.vec3),
                     g_depths: wp.array(dtype=float), g_opac_out: wp.array(dtype=float),
                     g_means: wp.array(dtype=wp.vec3), g_quats: wp.array(dtype=wp.vec4),
                     g_scales: wp.array(dtype=wp.vec3), g_opacities: wp.array(dtype=float)):
    """Adds this camera's share of the gradients (cameras run one after another)."""
    i = first + wp.tid()
    mc = cam.rot * means[i] + cam.trans
    q, norm = unit_quat(quats[i])
    rq = rotation(q)
    s = scales[i]
    m = wp.mat33(rq[0, 0] * s[0], rq[0, 1] * s[1], rq[0, 2] * s[2],
                 rq[1, 0] * s[0], rq[1, 1] * s[1], rq[1, 2] * s[2],
                 rq[2, 0] * s[0], rq[2, 1] * s[1], rq[2, 2] * s[2])
    cov_c = cam.rot * (m * wp.transpose(m)) * wp.transpose(cam.rot)
    tz = mc[2]
    in_depth = tz >= cam.near and tz <= cam.far
    z = wp.where(in_depth, tz, 1.0)
    lo_x, hi_x = clamp_bounds(cam.fx, cam.cx, cam.width)
    lo_y, hi_y = clamp_bounds(cam.fy, cam.cy, cam.height)
    ux = mc[0] / z
    uy = mc[1] / z
    tx = z * wp.clamp(ux, lo_x, hi_x)
    ty = z * wp.clamp(uy, lo_y, hi_y)
    jac = mat23(cam.fx / z, 0.0, -cam.fx * tx / (z * z), 0.0, cam.fy / z, -cam.fy * ty / (z * z))
    cov2d = jac * cov_c * wp.transpose(jac)
    a0 = cov2d[0, 0]
    b = 0.5 * (cov2d[0, 1] + cov2d[1, 0])
    c0 = cov2d[1, 1]
    det_orig = a0 * c0 - b * b
    a = a0 + cam.eps2d
    c = c0 + cam.eps2d
    det = a * c - b * b
    ok = in_depth and det > 0.0
    det_safe = wp.where(ok, det, 1.0)
    o = opacities[i]
    g_o_out = g_opac_out[i]
    visible = radii[i][0] > 0 and radii[i][1] > 0
    # the opacity (and, antialiased, its compensation sqrt(det_orig / det)) are not masked
    g_det = float(0.0)
    g_det_orig = float(0.0)
    if cam.antialiased != 0:
        ratio = det_orig / det_safe
        comp = wp.sqrt(wp.max(ratio, 1e-20))
        g_opacities[i] = g_opacities[i] + g_o_out * comp
        if ratio >= 1e-20 and ok:
            g_ratio = g_o_out * o * 0.5 / comp
            g_det_orig = g_ratio / det_safe
            g_det = -g_ratio * det_orig / (det_safe * det_safe)
    else:
        g_opacities[i] = g_opacities[i] + g_o_out
    if not visible:
        return
    # conic (c, -b, a) / det
    gq = g_conics[i]
    inv = 1.0 / det
    g_det = g_det - (gq[0] * c - gq[1] * b + gq[2] * a) * inv * inv
    g_a = gq[2] * inv + g_det * c + g_det_orig * c0
    g_c = gq[0] * inv + g_det * a + g_det_orig * a0
    g_b = -gq[1] * inv - 2.0 * b * (g_det + g_det_orig)
    g2 = wp.mat22(g_a, 0.5 * g_b, 0.5 * g_b, g_c)
    # cov2d = J cov_c J^T
    g_cov_c = wp.transpose(jac) * g2 * jac
    g_jac = 2.0 * (g2 * jac * cov_c)
    z2 = z * z
    g_tx = -g_jac[0, 2] * cam.fx / z2
    g_ty = -g_jac[1, 2] * cam.fy / z2
    g_z = (-g_jac[0, 0] * cam.fx / z2 + g_jac[0, 2] * 2.0 * cam.fx * tx / (z2 * z)
           - g_jac[1, 1] * cam.fy / z2 + g_jac[1, 2] * 2.0 * cam.fy * ty / (z2 * z))
    g_mx = float(0.0)
    g_my = float(0.0)
    # t = z clamp(m / z): unclamped, dt/dm = 1 and dt/dz = 0; clamped at L, dt/dz = L
    if ux >= lo_x and ux <= hi_x:
        g_mx = g_tx
    else:
        g_z = g_z + g_tx * wp.clamp(ux, lo_x, hi_x)
    if uy >= lo_y and uy <= hi_y:
        g_my = g_ty
    else:
        g_z = g_z + g_ty * wp.clamp(uy, lo_y, hi_y)
    # means2d = f m / z + c; depth = z
    gm2 = g_means2d[i]
    g_mx = g_mx + gm2[0] * cam.fx / z
    g_my = g_my + gm2[1] * cam.fy / z
    g_z = g_z - (gm2[0] * cam.fx * mc[0] + gm2[1] * cam.fy * mc[1]) / z2 + g_depths[i]
    g_means[i] = g_means[i] + wp.transpose(cam.rot) * wp.vec3(g_mx, g_my, g_z)
    # cov_c = R (M M^T) R^T, M = Rq diag(s)
    g_cov = wp.transpose(cam.rot) * g_cov_c * cam.rot
    g_m = (g_cov + wp.transpose(g_cov)) * m
    g_s = wp.vec3(g_m[0, 0] * rq[0, 0] + g_m[1, 0] * rq[1, 0] + g_m[2, 0] * rq[2, 0],
                  g_m[0, 1] * rq[0, 1] + g_m[1, 1] * rq[1, 1] + g_m[2, 1] * rq[2, 1],
                  g_m[0, 2] * rq[0, 2] + g_m[1, 2] * rq[1, 2] + g_m[2, 2] * rq[2, 2])
    g_scales[i] = g_scales[i] + g_s
    g00 = g_m[0, 0] * s[0]
    g01 = g_m[0, 1] * s[1]
    g02 = g_m[0, 2] * s[2]
    g10 = g_m[1, 0] * s[0]
    g11 = g_m[1, 1] * s[1]
    g12 = g_m[1, 2] * s[2]
    g20 = g_m[2, 0] * s[0]
    g21 = g_m[2, 1] * s[1]
    g22 = g_m[2, 2] * s[2]
    w = q[0]
    x = q[1]
    y = q[2]
    zq = q[3]
    g_q = 2.0 * wp.vec4(-zq * g01 + y * g02 + zq * g10 - x * g12 - y * g20 + x * g21,
                        y * g01 + zq * g02 + y * g10 - 2.0 * x * g11 - w * g12 + zq * g20 + w * g21 - 2.0 * x * g22,
                        -2.0 * y * g00 + x * g01 + w * g02 + x * g10 + zq * g12 - w * g20 + zq * g21 - 2.0 * y * g22,
                        -2.0 * zq * g00 - w * g01 + x * g02 + w * g10 - 2.0 * zq * g11 + y * g12 + x * g20 + y * g21)
    # q = p / max(|p|, 1e-12)
    if norm > 1e-12:
        g_q = (g_q - q * wp.dot(q, g_q)) / norm
    else:
        g_q = g_q / 1e-12
    g_quats[i] = g_quats[i] + g_q


@wp.func
def sh_basis(d: wp.vec3, degree: int):
    """The basis at the unit direction d and its derivatives in x, y, z (storage order, DC first)."""
    x = d[0]
    y = d[1]
    z = d[2]
    b = vec16()
    bx = vec16()
    by = vec16()
    bz = vec16()
    b[0] = SH_C0
    if degree >= 1:
        b[1] = -SH_C1 * y
        b[2] = SH_C1 * z
        b[3] = -SH_C1 * x
        by[1] = -SH_C1
        bz[2] = SH_C1
        bx[3] = -SH_C1
    if degree >= 2:
        xx = x * x
        yy = y * y
        zz = z * z
        b[4] = C2_0 * x * y
        b[5] = C2_1 * y * z
        b[6] = C2_2 * (2.0 * zz - xx - yy)
        b[7] = C2_3 * x * z
        b[8] = C2_4 * (xx - yy)
        bx[4] = C2_0 * y
        by[4] = C2_0 * x
        by[5] = C2_1 * z
        bz[5] = C2_1 * y
        bx[6] = -2.0 * C2_2 * x
        by[6] = -2.0 * C2_2 * y
        bz[6] = 4.0 * C2_2 * z
        bx[7] = C2_3 * z
        bz[7] = C2_3 * x
        bx[8] = 2.0 * C2_4 * x
        by[8] = -2.0 * C2_4 * y
        if degree >= 3:
            b[9] = C3_0 * y * (3.0 * xx - yy)
            b[10] = C3_1 * x * y * z
            b[11] = C3_2 * y * (4.0 * zz - xx - yy)
            b[12] = C3_3 * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
            b[13] = C3_4 * x * (4.0 * zz - xx - yy)
            b[14] = C3_5 * z * (xx - yy)
            b[15] = C3_6 * x * (xx - 3.0 * yy)
            bx[9] = 6.0 * C3_0 * x * y
            by[9] = C3_0 * (3.0 * xx - 3.0 * yy)
            bx[10] = C3_1 * y * z
            by[10] = C3_1 * x * z
            bz[10] = C3_1 * x * y
            bx[11] = -2.0 * C3_2 * x * y
            by[11] = C3_2 * (4.0 * zz - xx - 3.0 * yy)
            bz[11] = 8.0 * C3_2 * y * z
            bx[12] = -6.0 * C3_3 * x * z
            by[12] = -6.0 * C3_3 * y * z
            bz[12] = C3_3 * (6.0 * zz - 3.0 * xx - 3.0 * yy)
            bx[13] = C3_4 * (4.0 * zz - 3.0 * xx - yy)
            by[13] = -2.0 * C3_4 * x * y
            bz[13] = 8.0 * C3_4 * x * z
            bx[14] = 2.0 * C3_5 * x * z
            by[14] = -2.0 * C3_5 * y * z
            bz[14] = C3_5 * (xx - yy)
            bx[15] = C3_6 * (3.0 * xx - 3.0 * yy)
            by[15] = -6.0 * C3_6 * x * y
    return b, bx, by, bz


@wp.kernel
def sh_forward(means: wp.array(dtype=wp.vec3), coeffs: wp.array(dtype=float), stride: int, degree: int,
               campos: wp.vec3, first: int, colours: wp.array(dtype=wp.vec3)):
    """max(SH sum + 0.5, 0) seen from ``campos``; ``coeffs`` is [N, K, 3] flattened, ``stride`` = 3 K."""
    i = first + wp.tid()
    d = means[i] - campos
    d = d / wp.max(wp.length(d), 1e-12)
    b, _bx, _by, _bz = sh_basis(d, degree)
    base = i * stride
    col = wp.vec3()
    for k in range((degree + 1) * (degree + 1)):
        col = col + b[k] * wp.vec3(coeffs[base + 3 * k], coeffs[base + 3 * k + 1], coeffs[base + 3 * k + 2])
    colours[i] = wp.vec3(wp.max(col[0] + 0.5, 0.0), wp.max(col[1] + 0.5, 0.0), wp.max(col[2] + 0.5, 0.0))


@wp.kernel
def sh_backward(means: wp.array(dtype=wp.vec3), coeffs: wp.array(dtype=float), stride: int, degree: int,
                campos: wp.vec3, first: int, g_colours: wp.array(dtype=wp.vec3),
                g_coeffs: wp.array(dtype=float), g_means: wp.array(dtype=wp.vec3), with_means: int, fresh: int):
    """Adds this camera's share of the gradients (cameras run one after another); the first camera
    (``fresh``) writes them over whatever the buffers held, as if added to zeros."""
    i = first + wp.tid()
    raw_d = means[i] - campos
    length = wp.length(raw_d)
    d = raw_d / wp.max(length, 1e-12)
    b, bx, by, bz = sh_basis(d, degree)
    base = i * stride
    n = (degree + 1) * (degree + 1)
    col = wp.vec3()
    for k in range(n):
        col = col + b[k] * wp.vec3(coeffs[base + 3 * k], coeffs[base + 3 * k + 1], coeffs[base + 3 * k + 2])
    g = g_colours[i]
    # clamp_min(x, 0) passes the gradient where x >= 0
    g = wp.vec3(wp.where(col[0] + 0.5 >= 0.0, g[0], 0.0), wp.where(col[1] + 0.5 >= 0.0, g[1], 0.0),
                wp.where(col[2] + 0.5 >= 0.0, g[2], 0.0))
    g_d = wp.vec3()
    for k in range(n):
        j = base + 3 * k
        p = wp.vec3()
        if fresh == 0:
            p = wp.vec3(g_coeffs[j], g_coeffs[j + 1], g_coeffs[j + 2])
        g_coeffs[j] = p[0] + b[k] * g[0]
        g_coeffs[j + 1] = p[1] + b[k] * g[1]
        g_coeffs[j + 2] = p[2] + b[k] * g[2]
        g_b = coeffs[j] * g[0] + coeffs[j + 1] * g[1] + coeffs[j + 2] * g[2]
        g_d = g_d + g_b * wp.vec3(bx[k], by[k], bz[k])
    if fresh != 0:
        for j in range(base + 3 * n, base + stride):  # the coefficients past the degree
            g_coeffs[j] = 0.0
    if with_means != 0:
        m = wp.vec3()
        if fresh == 0:
            m = g_means[i]
        if length > 1e-12:
            g_means[i] = m + (g_d - d * wp.dot(d, g_d)) / length
        else:
            g_means[i] = m + g_d / 1e-12
