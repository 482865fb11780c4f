"""Test harness: a real Blender (the bpy module) with throwaway user folders and the built extension.

Blender reads its user folders once, when bpy is first imported, so they are pointed at a temporary
folder here, before anything imports bpy. The real user's preferences and extensions are never
touched.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
# The interpreter that runs the bridge (torch, gsplat): this one, unless the suite runs on a Blender
# whose Python has no torch (bpy 5.2/5.3 on Python 3.13), where dev.py points it at the 3.11 venv.
BRIDGE_PYTHON = os.environ.get("SPLATWORK_TEST_BRIDGE_PYTHON") or sys.executable
if BRIDGE_PYTHON != sys.executable:  # as a farm points headless Blender at its training environment
    os.environ["SPLATWORK_BRIDGE_PYTHON"] = BRIDGE_PYTHON
# Fixtures that give a test real Blender: such tests carry the "blender" marker, the ones dev.py
# also runs on every other supported Blender version.
BLENDER_FIXTURES = {"blender", "splatwork", "blender_with_splatwork", "extension_zip", "synthetic_scene"}

# Tests import torch next to Blender and run bridge subprocesses beside them: no busy-waiting pools.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The compiled rasterizer's kernels, compiled once (half a minute on 2 cores) and shared by every test
# session on every Blender, not once per session in each one's throwaway extension folder. The tests of
# the cache itself (tests/test_raster_warp.py) and of where the add-on puts it set their own.
os.environ.setdefault("SPLATWORK_CACHE_DIR", str(ROOT / "out" / "test-kernel-cache"))

_BLENDER_HOME = tempfile.mkdtemp(prefix="splatwork-test-blender-")
atexit.register(shutil.rmtree, _BLENDER_HOME, ignore_errors=True)
for _var in ("BLENDER_USER_RESOURCES", "BLENDER_USER_CONFIG", "BLENDER_USER_SCRIPTS",
             "BLENDER_USER_EXTENSIONS", "BLENDER_USER_DATAFILES"):
    os.environ.pop(_var, None)
os.environ["BLENDER_USER_RESOURCES"] = _BLENDER_HOME

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402  (after the environment above)

EXTENSION_MODULE = "bl_ext.user_default.splatwork"


def _load_compat():
    """addon/common/compat.py, the one place that asks what this Blender has, loaded on its own (it imports
    only bpy) so tests can ask it at collection time, before the extension is installed."""
    spec = importlib.util.spec_from_file_location("splatwork_test_compat", ROOT / "addon" / "common" / "compat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Version differences in tests, as in the add-on, only through compat (NATIVE_SPLATS, FLOAT4, ...).
compat = _load_compat()

# Modules that need torch in this process and have no Blender tests: on a Blender whose Python has
# no torch (bpy 5.2/5.3), they are not collected; the main environment runs them.
TORCH_MODULES = ["test_raster_autograd.py", "test_raster_reference.py", "test_raster_gpu.py", "test_train_parts.py",
                 "test_raster_render.py"]
collect_ignore = [] if importlib.util.find_spec("torch") is not None else TORCH_MODULES


def pytest_collection_finish(session):
    """Slow preparations that can overlap the run: a test module's ``start_early(names)`` is called with
    its selected tests' names once the selection is known (the EEVEE probe of test_splats_preview)."""
    selected: dict = {}
    for item in session.items:
        module = getattr(item, "module", None)
        if module is not None and hasattr(module, "start_early"):
            selected.setdefault(module, []).append(item.originalname)
    for module, names in selected.items():
        module.start_early(names)


def pytest_collection_modifyitems(config, items):
    cuda = _cuda_available()
    skip_gpu = pytest.mark.skip(reason=f"needs a CUDA GPU: {cuda[1]}")
    for item in items:
        if item.get_closest_marker("gpu") is not None and not cuda[0]:  # not keywords: a folder named gpu matches
            item.add_marker(skip_gpu)
        if BLENDER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.blender)


def pytest_report_header(config):
    return [f"Blender (bpy) {bpy.app.version_string}, Python {sys.version.split()[0]}; bridge Python: {BRIDGE_PYTHON}"]


_cuda_cache: tuple[bool, str] | None = None


def _cuda_available() -> tuple[bool, str]:
    """Asked in a subprocess, so the test process never loads CUDA next to Blender."""
    global _cuda_cache
    if _cuda_cache is None:
        code = "import torch,sys; ok=torch.cuda.is_available(); print(ok); sys.exit(0)"
        try:
            out = subprocess.run([BRIDGE_PYTHON, "-c", code], capture_output=True, text=True, timeout=120)
            ok = out.stdout.strip() == "True"
            _cuda_cache = (ok, "CUDA is available" if ok else "torch.cuda.is_available() is False here")
        except (OSError, subprocess.SubprocessError) as exc:
            _cuda_cache = (False, f"could not ask torch: {exc}")
    return _cuda_cache


def shared_data(*parts: str) -> Path:
    """A path in ../shared/data, or a skip (with the reason) where that folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (../shared/data is absent on a fresh clone)")
    return path


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> Path:
    """The extension built by Blender's own builder (tools/build_extension.py), for this platform."""
    sys.path.insert(0, str(ROOT / "tools"))
    import build_extension

    build_extension.fetch_wheels(ROOT / "wheels")
    build_extension.check_manifest_wheels(ROOT / "wheels")
    zips = build_extension.build(tmp_path_factory.mktemp("dist"))
    platform_tag = {"linux": "linux_x64", "win32": "windows_x64", "darwin": "macos_arm64"}[sys.platform]
    (zip_path,) = [z for z in zips if platform_tag in z.name]
    return zip_path


@contextlib.contextmanager
def unwritable_folder(folder: Path):
    """``folder``, made, where no file can be created: without write permission, or (as root, whom
    permissions do not stop) a read-only tmpfs mounted there. Skips when neither can be had."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("mount") is None:
        pytest.skip("as root, an unwritable folder needs a read-only tmpfs: mount(8) is missing")
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {run.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def assert_splats_close(got, want, exact_extras: bool = True) -> None:
    """Two SplatSets equal within float32 rounding of Blender's splat attributes: scales through
    exp/log, quaternions normalised (sign kept), opacities compared after the sigmoid."""
    np.testing.assert_array_equal(got.means, want.means)
    np.testing.assert_allclose(got.scales, want.scales, rtol=1e-5, atol=1e-5)
    unit = want.quats / np.linalg.norm(want.quats, axis=1, keepdims=True)
    np.testing.assert_allclose(got.quats, unit, rtol=1e-5, atol=1e-6)

    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))

    np.testing.assert_allclose(sigmoid(got.opacities), sigmoid(want.opacities), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.sh_dc, want.sh_dc)
    np.testing.assert_array_equal(got.sh_rest, want.sh_rest)
    for name in ("means", "scales", "quats", "opacities", "sh_dc", "sh_rest"):
        assert getattr(got, name).dtype == np.float32, name
    if exact_extras:
        assert got.extras.keys() == want.extras.keys()
        for name in got.extras:
            assert got.extras[name].dtype == want.extras[name].dtype, name
            np.testing.assert_array_equal(got.extras[name], want.extras[name], err_msg=name)


def one_splat(position, sigma=0.08, opacity=0.97, rgb=(0.9, 0.4, 0.1)):
    """A single round splat at ``position`` with an sRGB colour (a SplatSet of one)."""
    from bridge.formats import SplatSet

    s = SplatSet.empty(1)
    s.means[0] = position
    s.scales[0] = np.log(sigma)
    s.opacities[0] = np.log(opacity / (1 - opacity))
    s.sh_dc[0] = (np.asarray(rgb) - 0.5) / 0.28209479177387814
    return s


def centroid(weights: np.ndarray) -> np.ndarray:
    """(x, y) in pixel units, pixel centres at +0.5 as in the K matrix."""
    ys, xs = np.mgrid[: weights.shape[0], : weights.shape[1]] + 0.5
    return np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


def reference_render(splats, K, world_to_camera, width: int, height: int, **options) -> np.ndarray:
    """``bridge.raster.render_splats`` (our reference rasterizer, torch): in this process where torch
    imports, else in the bridge's interpreter (bpy 5.2/5.3 run on a Python without torch)."""
    return reference_renders(splats, [(K, world_to_camera)], width, height, **options)[0]


def reference_renders(splats, cameras, width: int, height: int, **options) -> list:
    """:func:`reference_render` of each ``(K, world_to_camera)`` in ``cameras``; where torch does not
    import here, all of them in one run of the bridge's interpreter (its start-up costs seconds)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return _reference_renders_in_bridge(splats, cameras, width, height, options)
    from bridge.raster import render_splats

    return [render_splats(splats, K, w2c, width, height, **options) for K, w2c in cameras]


def _reference_renders_in_bridge(splats, cameras, width, height, options) -> list:
    import json

    with tempfile.TemporaryDirectory(prefix="splatwork-reference-") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "in.npz", means=splats.means, scales=splats.scales, quats=splats.quats,
                 opacities=splats.opacities, sh_dc=splats.sh_dc, sh_rest=splats.sh_rest,
                 K=np.asarray([c[0] for c in cameras], np.float64), w2c=np.asarray([c[1] for c in cameras], np.float64))
        code = (
            "import json, sys, numpy as np\n"
            "from bridge.formats import SplatSet\n"
            "from bridge.raster import render_splats\n"
            "d = np.load(sys.argv[1])\n"
            "s = SplatSet(**{k: d[k] for k in ('means','scales','quats','opacities','sh_dc','sh_rest')})\n"
            "opts = json.loads(sys.argv[5])\n"
            "if opts.get('background') is not None: opts['background'] = np.asarray(opts['background'], np.float32)\n"
            "for i, (K, w2c) in enumerate(zip(d['K'], d['w2c'])):\n"
            "    out = render_splats(s, K, w2c, int(sys.argv[3]), int(sys.argv[4]), **opts)\n"
            "    np.savez(f'{sys.argv[2]}{i}.npz', **out)\n"
        )
        plain = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in options.items()}
        subprocess.run([BRIDGE_PYTHON, "-c", code, str(tmp / "in.npz"), str(tmp / "out"), str(width),
                        str(height), json.dumps(plain)], cwd=ROOT, check=True, timeout=600)
        renders = []
        for i in range(len(cameras)):
            with np.load(tmp / f"out{i}.npz") as out:
                renders.append({k: out[k] for k in out.files})
        return renders


def install_extension(zip_path: Path):
    """Install and enable the zip the way Blender's "Install from Disk" does; returns the module."""
    import importlib

    result = bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, result
    assert EXTENSION_MODULE in bpy.context.preferences.addons, "the extension did not enable"
    return importlib.import_module(EXTENSION_MODULE)


@pytest.fixture(scope="session")
def splatwork(extension_zip):
    """The built-and-installed extension, enabled; yields its root module."""
    module = install_extension(extension_zip)
    yield module


@pytest.fixture
def blender():
    """A clean Blender: factory startup file, empty scene (add-on preferences stay as they are)."""
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    yield bpy
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)


@pytest.fixture
def blender_with_splatwork(splatwork, blender):
    """A clean Blender with the extension enabled."""
    if EXTENSION_MODULE not in bpy.context.preferences.addons:
        bpy.ops.preferences.addon_enable(module=EXTENSION_MODULE)
    return bpy


def render_cycles(
    scene=None,
    samples: int = 8,
    resolution: tuple[int, int] | None = None,
    path: Path | None = None,
) -> np.ndarray:
    """Render ``scene`` with Cycles on the CPU and return its pixels, (H, W, 4) float32, top row first.

    The image goes through the scene's colour management (view transform "Standard" unless the
    scene says otherwise), so values are display-referred sRGB in [0, 1].
    """
    scene = scene or bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    if resolution is not None:
        scene.render.resolution_x, scene.render.resolution_y = resolution
        scene.render.resolution_percentage = 100
    return render_to_array(scene, path)


def render_to_array(scene, path: Path | None = None) -> np.ndarray:
    """Render ``scene`` with its current engine to an 8-bit PNG and read it back: (H, W, 4) floats in [0, 1]."""
    tmpdir = None
    if path is None:
        tmpdir = tempfile.mkdtemp(prefix="splatwork-render-")
        path = Path(tmpdir) / "render.png"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True, scene=scene.name)
    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGBA") if img.mode != "RGBA" else img)
            pixels = pixels.astype(np.float32) / (65535.0 if pixels.dtype == np.uint16 else 255.0)
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    return pixels


@pytest.fixture
def render():
    """The Cycles CPU render helper as a fixture: ``render(scene=None, samples=8, resolution=None)``."""
    return render_cycles


@pytest.fixture(scope="session")
def synthetic_scene(splatwork, tmp_path_factory) -> Path:
    """The built-in synthetic scene, rendered once per session: a folder with ``images/view_NNN.png``
    (24 views, 96x72, Cycles) and ``sparse/0`` (binary COLMAP model with the exact poses and 3,000
    surface points with their texel colours)."""
    return splatwork.addon.reconstruction.synthetic.make_synthetic_scene(tmp_path_factory.mktemp("synthetic"))
