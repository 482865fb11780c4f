"""Someone else's glTF readers for the tests: the Khronos glTF Validator (Node.js) and Babylon.js's
KHR_gaussian_splatting loader in headless Chromium, both from tools/web (pinned npm packages that
``dev.py`` installs with ``npm ci``; Chromium from Debian's packages).

Nothing is downloaded while a test runs: a small HTTP server on 127.0.0.1 serves the page
(tools/web/splat_view.html), Babylon.js out of tools/web/node_modules and the .glb, and the page
posts its picture back to the same server. Imports neither bpy nor torch, nor conftest.
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "tools" / "web"
NODE_MODULES = WEB / "node_modules"
PAGE = WEB / "splat_view.html"
# The flags that work on a machine without a display, GPU or outside network (software WebGL 2).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--mute-audio",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]
PACKAGES = ("babylonjs", "babylonjs-loaders", "gltf-validator")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
                 ".map": "application/json", ".wasm": "application/wasm", ".glb": "model/gltf-binary",
                 ".gltf": "model/gltf+json", ".json": "application/json"}


def missing_tools(need_browser: bool = True) -> str:
    """Why the browser checks cannot run here ("" when they can): for a skip message."""
    if shutil.which("node") is None:
        return "Node.js is not installed (Debian: apt-get install nodejs npm; then python3.11 dev.py test)"
    absent = [p for p in PACKAGES if not (NODE_MODULES / p / "package.json").is_file()]
    if absent:
        return (f"the pinned npm packages are not installed in tools/web ({', '.join(absent)} missing): "
                "run `npm ci` in tools/web (python3.11 dev.py test does)")
    if need_browser and chromium() is None:
        return "Chromium is not installed (Debian: apt-get install chromium; python3.11 dev.py test does as root)"
    return ""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def validate(path: str | os.PathLike) -> dict:
    """The glTF Validator's report on ``path`` (its JSON, as a dict)."""
    out = subprocess.run(["node", str(WEB / "validate.mjs"), os.fspath(path)], cwd=WEB, capture_output=True,
                         text=True, timeout=300)
    if out.returncode not in (0, 1):
        raise RuntimeError(f"the glTF Validator failed (exit {out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, Path]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.result: dict | None = None
        self.done = threading.Event()
        self.misses: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _file(self, url_path: str) -> Path | None:
        path = urllib.parse.unquote(url_path.lstrip("/"))
        if path in self.server.files:
            return self.server.files[path]
        top, _, rest = path.partition("/")
        if top in ("babylonjs", "babylonjs-loaders") and rest:
            folder = (NODE_MODULES / top).resolve()
            target = (folder / rest).resolve()
            if target.is_file() and folder in target.parents:
                return target
        return None

    def do_GET(self):  # noqa: N802 - the base class's name
        target = self._file(urllib.parse.urlsplit(self.path).path)
        if target is None:
            self.server.misses.append(self.path)
            self.send_error(404)
            return
        data = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPES.get(target.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(min(length, 1 << 28))
        self.send_response(204)
        self.end_headers()
        if urllib.parse.urlsplit(self.path).path == "/result" and not self.server.done.is_set():
            try:
                self.server.result = json.loads(body)
            except ValueError as exc:
                self.server.result = {"error": f"unreadable result: {exc}"}
            self.server.done.set()


def render_in_browser(glb: str | os.PathLike, width: int, height: int, eye, target, fov_y: float,
                      timeout: float = 240.0) -> np.ndarray:
    """Babylon.js's render of ``glb`` in headless Chromium from a camera at ``eye`` looking at
    ``target`` (glTF axes, +Y up) with vertical field of view ``fov_y`` (radians): (H, W, 3) floats in
    [0, 1], top row first. RuntimeError with the page's message when it fails."""
    from PIL import Image

    server = _Server({"view.html": PAGE, "scene.glb": Path(glb)})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    query = urllib.parse.urlencode({"file": "/scene.glb", "w": width, "h": height, "fov": repr(float(fov_y)),
                                    "eye": ",".join(repr(float(v)) for v in eye),
                                    "target": ",".join(repr(float(v)) for v in target)})
    profile = tempfile.mkdtemp(prefix="splatwork-chromium-")
    log = io.BytesIO()
    browser = None
    try:
        browser = subprocess.Popen(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
             f"http://127.0.0.1:{port}/view.html?{query}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        reader = threading.Thread(target=lambda: log.write(browser.stderr.read()), daemon=True)
        reader.start()
        finished = server.done.wait(timeout)
        if not finished:
            raise RuntimeError(f"no picture from Chromium within {timeout:.0f} s; requests that found nothing: "
                               f"{server.misses}; Chromium said: {log.getvalue()[-2000:].decode(errors='replace')}")
        result = server.result or {}
        if "error" in result:
            raise RuntimeError(f"the page failed: {result['error']} (requests that found nothing: {server.misses})")
        png = base64.b64decode(result["png"].split(",", 1)[1])
        with Image.open(io.BytesIO(png)) as img:
            pixels = np.asarray(img.convert("RGB"), np.float32) / 255.0
        if pixels.shape != (height, width, 3):
            raise RuntimeError(f"the page drew {pixels.shape[1]}x{pixels.shape[0]}, not {width}x{height}")
        return pixels
    finally:
        if browser is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGTERM)
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(browser.pid, signal.SIGKILL)
                browser.wait(10)
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)


def look_at_opencv(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """The 4x4 world-to-camera matrix (OpenCV axes: x right, y down, z forward) of a camera at ``eye``
    looking at ``target`` with ``up`` up: what ``bridge.raster.render_splats`` takes."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])  # rows: the camera's axes in world coordinates
    w2c = np.eye(4)
    w2c[:3, :3] = rot
    w2c[:3, 3] = -rot @ eye
    return w2c


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
