"""The compiled rasterizer: gsplat's tile rasterizer as NVIDIA Warp kernels, on the CPU (every core) and
on NVIDIA GPUs with nothing but the driver (Warp's wheel carries its own Clang/LLVM and NVRTC).

The work goes through ``torch_backend.rasterize_torch``'s steps (the render modes, packing, absgrad, the
info dict), with Warp kernels for what costs: binning into per-tile depth-ordered lists
(``warp_binning``), a front-to-back walk per pixel that stops at gsplat's transmittance threshold and a
backward that walks back to front from the stored final transmittance (``warp_pixels`` on a GPU: a
thread per pixel; ``warp_tiles`` on the CPU: 8-wide vector rows of 8x8 tiles, from a record per splat);
on the CPU also projection and SH colours with their backward passes (``warp_geometry``; on a GPU
those stay torch's ops). On the CPU the rasterizer runs its own threads, one per core
(:func:`cpu_threads`): the compositing kernels take tiles from a shared counter, the per-splat kernels
ranges of splats; a CPU launch runs on the thread that makes it, without the GIL.

Loading: :func:`unavailable` says whether Warp imports (never compiles); :func:`prepare` compiles the
kernels for a device, or loads them from the cache, with progress (the first compile takes seconds);
the cache lives in ``$SPLATWORK_CACHE_DIR`` (the add-on points it into the extension's user folder)
or the user's cache folder, one subfolder per Warp version. A cache that does not load is cleared and
rebuilt once; a compile that still fails is reported, and callers fall back to the PyTorch backend.

Test hook: ``SPLATWORK_WARP=off`` makes Warp unavailable through this same code path.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

WARP_VERSION = "1.19.0"  # the pin (requirements.txt, the installer); another version is refused
FORCE_ENV = "SPLATWORK_WARP"
CACHE_ENV = "SPLATWORK_CACHE_DIR"
CPU_TILE = 8  # on the CPU smaller tiles mean fewer splats walked in vain; the image does not depend on it
GPU_TILE = 16  # gsplat's: one tile is one block of 256 threads
TILE_CHUNK = 2  # tiles a CPU worker takes from the shared counter at a time
MAX_PAIRS = (1 << 31) - 1  # int32 indices in the kernels
# Warp modules compiled per device: binning, then the compositing kernels for that kind of device.
CPU_MODULES = ("warp_binning", "warp_geometry", "warp_tiles")
GPU_MODULES = ("warp_binning", "warp_pixels")

_lock = threading.Lock()
_probe: str | None = None  # "" when warp imported, else why not
_prepared: dict[str, str] = {}  # device -> "" when ready, else why not
_pool: ThreadPoolExecutor | None = None
wp = None  # the warp module once imported
binning = geometry = pixels = tiles = None  # the kernel modules once imported


class CompileError(RuntimeError):
    """The kernels could not be compiled or loaded for a device; the message says why."""


def unavailable() -> str:
    """"" when Warp imports at the pinned version, else why not (one sentence). Never compiles."""
    global _probe
    if _probe is None:
        with _lock:
            if _probe is None:
                _probe = _import()
    return _probe


def _import() -> str:
    global wp
    if os.environ.get(FORCE_ENV, "").lower() in ("0", "off", "no", "false"):
        return f"the compiled rasterizer is turned off ({FORCE_ENV}={os.environ[FORCE_ENV]})"
    try:
        import warp
    except Exception as exc:  # noqa: BLE001 - a missing or broken install is a reason, not a crash
        return f"warp-lang does not import ({type(exc).__name__}: {exc})"
    version = getattr(warp, "__version__", "")
    if version != WARP_VERSION:
        return f"warp-lang {version} is installed, Splatwork is tested with {WARP_VERSION}"
    try:
        warp.config.quiet = True
        warp.config.log_level = warp.LOG_WARNING  # no line per module load
        warp.config.kernel_cache_dir = os.path.join(cache_root(), "warp")  # Warp adds a folder per version
        _quiet_init(warp)
    except Exception as exc:  # noqa: BLE001
        return f"warp-lang does not start ({type(exc).__name__}: {exc})"
    wp = warp
    return ""


def _quiet_init(warp) -> None:
    """warp.init() without its banner and its warning about a missing CUDA driver (normal on a CPU machine):
    both go to the process's own stdout/stderr, where the bridge's events are."""
    stdout_fd, stderr_fd = sys.stdout.fileno(), sys.stderr.fileno()
    saved = os.dup(stdout_fd), os.dup(stderr_fd)
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stdout_fd)
        os.dup2(devnull, stderr_fd)
        warp.init()
    finally:
        os.dup2(saved[0], stdout_fd)
        os.dup2(saved[1], stderr_fd)
        for fd in (*saved, devnull):
            os.close(fd)


def cache_root() -> str:
    """Where compiled kernels are kept: ``$SPLATWORK_CACHE_DIR`` else the user's cache folder."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return root
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "splatwork")


def kernel_cache_dir() -> str:
    """Where this Warp version's kernels are kept: Warp adds a folder per version under ``<root>/warp``, so
    another version's cache is never read (it stays beside, and this one is compiled anew)."""
    if wp is not None:
        return wp.config.kernel_cache_dir  # as Warp resolved it at init
    return os.path.join(cache_root(), "warp", WARP_VERSION)


def _modules(device: str) -> tuple[str, ...]:
    return GPU_MODULES if device != "cpu" or _pixel_kernels_on_cpu() else CPU_MODULES


def _source_hash(device: str) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256(WARP_VERSION.encode())
    for name in _modules(device):
        with open(os.path.join(here, name + ".py"), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def _marker(device: str) -> str:
    kind = "cpu" if device == "cpu" else "cuda"
    return os.path.join(kernel_cache_dir(), f"splatwork-{kind}-{_source_hash(device)}.json")


def compiled(device="cpu") -> bool:
    """Whether the kernels for ``device`` were compiled and checked here before (then loading them takes
    about a second); False means :func:`prepare` will compile them (seconds)."""
    if unavailable():
        return False
    return os.path.isfile(_marker(_warp_device(device)))


def _warp_device(device) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return "cpu"


def prepare(device="cpu", progress=None) -> str:
    """Compile (first time) or load the kernels for ``device``: "" when ready, else why not (one sentence).

    ``progress(done, total, what)`` is called while a compile runs (not for a load from the cache):
    modules compiled of all, about once a second. A cache that fails to load is cleared and compiled
    once more before giving up. Once per process and device; later calls return the first answer.
    """
    reason = unavailable()
    if reason:
        return reason
    key = _warp_device(device)
    with _lock:
        if key not in _prepared:
            _prepared[key] = _prepare(key, progress)
    return _prepared[key]


def _prepare(device: str, progress) -> str:
    global binning, geometry, pixels, tiles
    try:
        if device != "cpu" and not wp.is_cuda_available():
            return "Warp finds no CUDA driver for the GPU"
        from . import warp_binning, warp_geometry, warp_pixels, warp_tiles

        binning, geometry, pixels, tiles = warp_binning, warp_geometry, warp_pixels, warp_tiles
    except Exception as exc:  # noqa: BLE001
        return f"the kernels do not import ({type(exc).__name__}: {exc})"
    report = progress if progress is not None and not os.path.isfile(_marker(device)) else None
    try:
        _load_all(device, report)
    except Exception as first:  # noqa: BLE001 - a corrupt or half-written cache: clear it, compile again
        for name in _modules(device):
            wp.get_module(f"{__package__}.{name}").unload()
        shutil.rmtree(kernel_cache_dir(), ignore_errors=True)
        try:
            _load_all(device, progress)
        except Exception as exc:  # noqa: BLE001
            return (f"its kernels do not compile ({_short(exc)}; before the cache was cleared: {_short(first)})")
    try:
        _self_test(device)
    except Exception as exc:  # noqa: BLE001
        return f"its compiled kernels fail their check ({_short(exc)})"
    marker = _marker(device)
    if not os.path.isfile(marker):
        try:
            os.makedirs(os.path.dirname(marker), exist_ok=True)
            tmp = f"{marker}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"warp": WARP_VERSION, "device": device, "time": time.time()}, f)
            os.replace(tmp, marker)
        except OSError:
            pass  # a read-only cache still works; the next run just shows the stage again
    return ""


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _load_all(device: str, progress) -> None:
    """Load (compiling where the cache has nothing) each module on a worker thread, reporting about once a
    second from this one: a compile is one long call per module."""
    names = _modules(device)
    state = {"done": 0, "error": None}

    def work() -> None:
        try:
            for name in names:
                wp.load_module(f"{__package__}.{name}", device=device)
                state["done"] += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            state["error"] = exc

    worker = threading.Thread(target=work, name="splatwork-compile", daemon=True)
    worker.start()
    while True:
        worker.join(1.0)
        if progress is not None:
            progress(state["done"], len(names), "")
        if not worker.is_alive():
            break
    if state["error"] is not None:
        raise state["error"]


def _self_test(device: str) -> None:
    """One splat on a 4x4 image: a crashed or wrong compile shows here, not in the middle of a run."""
    dev = "cpu" if device == "cpu" else device
    means2d = torch.tensor([[2.0, 2.0]], device=dev)
    conics = torch.tensor([[0.5, 0.0, 0.5]], device=dev)
    opac = torch.tensor([0.8], device=dev)
    feats = torch.tensor([[1.0, 0.5, 0.25]], device=dev)
    radii = torch.tensor([[3, 3]], dtype=torch.int32, device=dev)
    colour, trans = composite_camera(means2d, conics, opac, feats, radii, torch.ones(1, device=dev), 4, 4)
    expected = 0.8 * math.exp(-0.5 * 0.5 * (0.5 * 0.5 * 2))  # the pixel centre (1.5, 1.5)
    got = float(1.0 - trans[1, 1])
    if not abs(got - expected) < 1e-5:
        raise CompileError(f"alpha {got} where {expected} was due")


# ---- compositing -------------------------------------------------------------------------------


THREADS_ENV = "SPLATWORK_RASTER_THREADS"


def cpu_threads() -> int:
    """The compiled rasterizer's threads on the CPU: ``$SPLATWORK_RASTER_THREADS``, else one per core this
    process may use. They are its own (Python threads, each running kernels without the GIL), not torch's:
    a process that trains with it keeps torch's ops on one thread (the trainer does), so that torch's idle
    OpenMP workers do not spin against them."""
    try:
        wanted = int(os.environ.get(THREADS_ENV, "0") or 0)
    except ValueError:
        wanted = 0
    if wanted > 0:
        return wanted
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _threads() -> int:
    return cpu_threads()


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool._max_workers < workers:  # noqa: SLF001 - grow only
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="splatwork-raster")
    return _pool


def _arr(t: Tensor, dtype=None):
    return wp.from_torch(t, dtype=dtype, requires_grad=False, return_ctype=True)


def _stream(device: str):
    return wp.stream_from_torch(torch.device(device))


def _on_cpu_threads(total: int, grain: int, launch, per_worker: int = 8, least: int | None = None) -> int:
    """``launch(a, b, worker)`` over [0, total) in ranges of at most ``grain``, on the CPU's threads (each
    worker index on one thread at a time, for its own buffers), a worker for each ``least`` (default
    ``grain``) of the total; returns the number of workers."""
    workers = max(1, min(_threads(), math.ceil(total / max(1, least or grain))))
    # one range per worker when there is one worker, else at least ``per_worker`` each, of equal sizes and a
    # whole number of them per worker (threads finish together)
    pieces = max(workers * per_worker, math.ceil(total / max(1, grain)))
    step = total if workers == 1 else max(1, math.ceil(total / (math.ceil(pieces / workers) * workers)))
    ranges = [(a, min(total, a + step)) for a in range(0, total, step)]
    if workers == 1:
        for a, b in ranges:
            launch(a, b, 0)
        return 1
    counter = itertools.count()

    def work(worker: int) -> None:
        while True:
            j = next(counter)  # atomic under the GIL
            if j >= len(ranges):
                return
            launch(*ranges[j], worker)

    for future in [_executor(workers).submit(work, w) for w in range(workers)]:
        future.result()
    return workers


def _workers(workers: int, work) -> int:
    """``work(worker)`` for each worker index, on that many CPU threads (this one among them)."""
    if workers == 1:
        work(0)
        return 1
    futures = [_executor(workers - 1).submit(work, w) for w in range(1, workers)]
    try:
        work(0)
    finally:
        for future in futures:
            future.result()
    return workers


class _Plan:
    """One camera's binning: each tile's list of splats in depth order (``offsets``, ``ids``)."""

    def __init__(self, means2d: Tensor, conics: Tensor, opacities: Tensor, radii: Tensor, depths: Tensor,
                 width: int, height: int):
        tdev = means2d.device
        self.device = _warp_device(tdev)
        self.cuda = self.device != "cpu"
        self.width, self.height = width, height
        self.ts = GPU_TILE if self.cuda else CPU_TILE
        self.tiles_x, self.tiles_y = math.ceil(width / self.ts), math.ceil(height / self.ts)
        self.n_tiles = self.tiles_x * self.tiles_y
        n = means2d.shape[0]
        m2 = means2d.detach().contiguous()
        cn = conics.detach().contiguous()
        op = opacities.detach().contiguous()
        rd = radii.detach().to(torch.int32).contiguous()
        geometry = [_arr(m2, wp.vec2), _arr(rd, wp.vec2i), _arr(cn, wp.vec3), _arr(op), self.ts, self.tiles_x,
                    self.tiles_y]
        self.perm = None  # the CPU kernels': packed record -> splat
        if self.cuda or _pixel_kernels_on_cpu():
            # Past this sigma, alpha = opacity exp(-sigma) is under 1/255: the per-pixel kernels skip the exp.
            self.cutoffs = (torch.log(op.clamp_min(1e-30) * 255.0) + 1e-3).contiguous()
            self._bin(n, geometry, depths, width, height)
        else:
            self._bin_cpu(n, geometry, m2, rd, depths, width, height)

    def _check_pairs(self, total: int, width: int, height: int) -> None:
        if total > MAX_PAIRS:
            raise ValueError(f"{total:,} splat-tile pairs in a {width}x{height} frame, more than the compiled "
                             f"rasterizer's limit of {MAX_PAIRS:,}: use backend='torch' or fewer splats")

    def _bin(self, n: int, geometry: list, depths: Tensor, width: int, height: int) -> None:
        """The GPU's binning: count, write the pairs with the splats laid out in depth order, stable sort by tile."""
        tdev = depths.device
        counts = torch.zeros(n, dtype=torch.int32, device=tdev)
        self.reach = torch.zeros(n, dtype=torch.float32, device=tdev)
        self._per_splat(binning.count_tiles, n, geometry, [_arr(counts), _arr(self.reach)])
        counts64 = counts.long()
        total = int(counts64.sum()) if n else 0
        self._check_pairs(total, width, height)
        # Splats laid out in depth order (ties by index), so a stable sort by tile leaves each list in depth order.
        order = torch.sort(depths.detach(), stable=True).indices
        ends = torch.cumsum(counts64[order], 0)
        starts = torch.empty_like(counts64)
        starts[order] = ends - counts64[order]
        tile_of_pair = torch.empty(total, dtype=torch.int32, device=tdev)
        splat_of_pair = torch.empty(total, dtype=torch.int32, device=tdev)
        self._per_splat(binning.emit_pairs, n, geometry,
                        [_arr(starts.to(torch.int32)), _arr(tile_of_pair), _arr(splat_of_pair)])
        per_tile = torch.bincount(tile_of_pair, minlength=self.n_tiles)
        self.offsets = torch.zeros(self.n_tiles + 1, dtype=torch.int32, device=tdev)
        torch.cumsum(per_tile, 0, out=self.offsets[1:])
        self.ids = splat_of_pair[torch.sort(tile_of_pair, stable=True).indices]
        self.pairs = total

    def _bin_cpu(self, n: int, geometry: list, m2: Tensor, rd: Tensor, depths: Tensor, width: int,
                 height: int) -> None:
        """The CPU's binning (``warp_binning.bin_count_cpu``/``bin_emit_cpu``): the lists hold record numbers,
        the visible splats numbered by the tile their mean is in (``perm``), so that the splats of
        neighbouring tiles lie near each other in memory."""
        # The visible splats in depth order (``order``) and their record numbers (``perm``, ``labels``): two
        # independent compiled tasks (``warp_tiles.bin_order_cpu``), one on each of two threads.
        order = torch.empty(n, dtype=torch.int32)
        perm = torch.empty(n, dtype=torch.int32)
        labels = torch.empty(n, dtype=torch.int32)
        counts = torch.zeros(2, dtype=torch.int32)
        scratch = [torch.empty(3 * n, dtype=torch.int32), torch.empty(n + self.n_tiles + 1, dtype=torch.int32)]
        head = [_arr(m2, wp.vec2), _arr(rd, wp.vec2i), _arr(depths.detach().contiguous()), n, self.ts, self.tiles_x,
                self.tiles_y, self.n_tiles]
        tasks = [(0, 1)] if _threads() == 1 or n < 4096 else [(0,), (1,)]

        def order_tasks(w: int) -> None:
            for task in tasks[w]:
                wp.launch(tiles.bin_order_cpu, dim=1, device="cpu", inputs=[
                    *head, task, _arr(order), _arr(perm), _arr(labels), _arr(counts[task:task + 1]),
                    _arr(scratch[task])])

        _workers(len(tasks), order_tasks)
        count = int(counts[0])
        order, self.perm = order[:count], perm[:count]
        workers = max(1, min(_threads(), count // 4096))
        bounds = [count * w // workers for w in range(workers + 1)]
        tile_counts = torch.zeros(workers, self.n_tiles, dtype=torch.int32)
        masks = torch.empty(n, dtype=torch.int64)
        self.reach = torch.zeros(n, dtype=torch.float32)
        _workers(workers, lambda w: wp.launch(binning.bin_count_cpu, dim=1, device="cpu", inputs=[
            *geometry, _arr(order), bounds[w], bounds[w + 1], _arr(tile_counts[w]), _arr(masks, wp.uint64),
            _arr(self.reach)]))
        per_tile = tile_counts.sum(0)
        self.pairs = total = int(per_tile.sum())
        self._check_pairs(total, width, height)
        self.offsets = torch.zeros(self.n_tiles + 1, dtype=torch.int32)
        torch.cumsum(per_tile, 0, out=self.offsets[1:])
        cursor = (self.offsets[:-1] + torch.cumsum(tile_counts, 0) - tile_counts).to(torch.int32)
        self.ids = torch.empty(total, dtype=torch.int32)
        _workers(workers, lambda w: wp.launch(binning.bin_emit_cpu, dim=1, device="cpu", inputs=[
            *geometry, _arr(order), bounds[w], bounds[w + 1], _arr(masks, wp.uint64), _arr(labels),
            _arr(cursor[w]), _arr(self.ids)]))

    def splat_ids(self) -> Tensor:
        """Each tile's list as splat indices (the CPU's lists hold record numbers)."""
        return self.ids if self.perm is None else self.perm[self.ids.long()]

    def records(self, means2d: Tensor, conics: Tensor, opacities: Tensor, group: Tensor) -> Tensor:
        """The CPU kernels' [visible, 16] records with the features ``group`` [N, 4]."""
        out = torch.empty(len(self.perm), 16, dtype=torch.float32)
        if len(self.perm):
            wp.launch(binning.pack_records, dim=len(self.perm), device="cpu", inputs=[
                _arr(self.perm), _arr(means2d, wp.vec2), _arr(conics, wp.vec3), _arr(opacities), _arr(self.reach),
                _arr(group, wp.vec4), _arr(out)])
        return out

    def _per_splat(self, kernel, n: int, geometry: list, outputs: list) -> None:
        if n == 0:
            return
        if self.cuda:
            wp.launch(kernel, dim=n, inputs=[*geometry, 0, *outputs], device=self.device, stream=_stream(self.device))
        else:
            _on_cpu_threads(n, 16384, lambda a, b, _w: wp.launch(kernel, dim=b - a, inputs=[*geometry, a, *outputs],
                                                                   device="cpu"))

    def launch(self, forward: bool, means2d: Tensor, conics: Tensor, opacities: Tensor, group: Tensor, tail) -> int:
        """Launch the forward or backward compositing kernel over the frame: one launch on a GPU; on the CPU
        one launch per worker thread, the workers taking tiles from a shared counter. ``tail(worker)`` gives
        the arguments after the launch geometry (outputs; on the CPU each worker its own gradient buffers).
        Returns the number of workers used."""
        if self.perm is None:
            head = [_arr(self.offsets), _arr(self.ids), _arr(means2d, wp.vec2), _arr(conics, wp.vec3),
                    _arr(opacities)]
            kernel = pixels.composite_forward if forward else pixels.composite_backward
            head += [_arr(self.cutoffs), _arr(group, wp.vec4), self.width, self.height, self.ts, self.tiles_x]
            per_tile = self.ts * self.ts
            if self.cuda:
                wp.launch(kernel, dim=self.n_tiles * per_tile, inputs=[*head, 0, *tail(0)], device=self.device,
                          stream=_stream(self.device), block_dim=per_tile)
                return 1
            return _on_cpu_threads(self.n_tiles, 64, lambda a, b, w: wp.launch(
                kernel, dim=(b - a) * per_tile, inputs=[*head, a, *tail(w)], device="cpu"))
        kernel = tiles.composite_forward_cpu if forward else tiles.composite_backward_cpu
        counter = torch.zeros(1, dtype=torch.int32)
        head = [_arr(self.offsets), _arr(self.ids), _arr(group.reshape(-1)), self.width, self.height, self.tiles_x,
                self.n_tiles, _arr(counter), TILE_CHUNK]
        workers = max(1, min(_threads(), self.n_tiles // (4 * TILE_CHUNK)))
        return _workers(workers, lambda w: wp.launch(kernel, dim=1, inputs=[*head, *tail(w)], device="cpu"))


def _pixel_kernels_on_cpu() -> bool:
    """Test hook: the GPU's per-pixel kernels on the CPU (``SPLATWORK_WARP_CPU_KERNELS=pixel``)."""
    return os.environ.get("SPLATWORK_WARP_CPU_KERNELS", "") == "pixel"


def _groups(feats: Tensor) -> list[Tensor]:
    """Features as contiguous [N, 4] groups (the kernels' vec4), the last padded with zeros."""
    n, d = feats.shape
    g = math.ceil(d / 4)
    if 4 * g != d:  # one copy into a zeroed tail (torch's pad is twice as slow on one thread)
        padded = torch.empty(n, 4 * g, dtype=feats.dtype, device=feats.device)
        padded[:, :d].copy_(feats)
        padded[:, d:].zero_()
        feats = padded
    return [feats[:, 4 * i:4 * i + 4].contiguous() for i in range(g)]


class _Composite(torch.autograd.Function):
    """Compositing of one camera as an autograd node: gsplat's forward and backward walks."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, feats, plan, absgrad_sink):
        means2d, conics, opacities = means2d.contiguous(), conics.contiguous(), opacities.contiguous()
        height, width, d = plan.height, plan.width, feats.shape[1]
        groups = _groups(feats)
        if plan.perm is not None:  # the CPU's kernels read a record per splat
            groups = [plan.records(means2d, conics, opacities, group) for group in groups]
        trans = torch.empty(height * width, dtype=feats.dtype, device=feats.device)
        last = torch.empty(height * width, dtype=torch.int32, device=feats.device)
        colours = []
        for group in groups:
            colour = torch.empty(height * width, 4, dtype=feats.dtype, device=feats.device)
            plan.launch(True, means2d, conics, opacities, group,
                        lambda _w, c=colour: [_arr(c, wp.vec4), _arr(trans), _arr(last)])
            colours.append(colour)
        colour = torch.cat(colours, dim=1)[:, :d] if len(colours) > 1 else colours[0][:, :d]
        ctx.plan, ctx.absgrad_sink, ctx.channels = plan, absgrad_sink, d
        ctx.set_materialize_grads(False)  # an unused output's gradient comes as None, not a tensor of zeros
        ctx.save_for_backward(means2d, conics, opacities, trans, last, *groups)
        ctx.mark_non_differentiable(last)
        return colour.reshape(height, width, d), trans.reshape(height, width)

    @staticmethod
    def backward(ctx, g_colour, g_trans):
        means2d, conics, opacities, trans, last, *groups = ctx.saved_tensors
        plan, sink, d = ctx.plan, ctx.absgrad_sink, ctx.channels
        n, dev, dtype = means2d.shape[0], means2d.device, means2d.dtype
        pixels = plan.height * plan.width
        if g_colour is None:
            g_colour = torch.zeros(pixels, d, dtype=dtype, device=dev)
        g_colour = g_colour.reshape(pixels, d)
        with_trans = g_trans is not None
        g_trans = g_trans.reshape(pixels).contiguous() if with_trans else trans
        if plan.perm is not None:
            g_means2d, g_conics, g_opac, g_feats, absgrad = _backward_cpu(
                plan, groups, g_colour.contiguous(), trans, last, g_trans, with_trans, sink is not None, n, d)
        else:
            g_means2d, g_conics, g_opac, g_feats, absgrad = _backward_pixels(
                plan, means2d, conics, opacities, groups, _groups(g_colour), trans, last, g_trans, with_trans,
                sink is not None, n, d)
        if sink is not None:
            target, ids = sink if isinstance(sink, tuple) else (sink, None)
            target[:n] += absgrad.to(target.dtype)
        return g_means2d, g_conics, g_opac, g_feats, None, None


def _backward_cpu(plan, records, g_colour, trans, last, g_trans, with_trans, with_absgrad, n, d):
    """The CPU kernels' backward: each worker sums into its own [visible, 8 + 4 groups] buffer (mean, conic,
    opacity, absgrad, features), the buffers summed and scattered back to the splats. ``g_colour`` [pixels,
    d], contiguous: each launch reads its group's channels from it."""
    stride = 8 + 4 * len(records)
    slots = _threads()
    bufs = [torch.zeros(len(plan.perm), stride) for _ in range(slots)]
    used = 1
    flat = g_colour.reshape(-1)
    for i, rec in enumerate(records):
        first = i == 0  # the transmittance's and absgrad's share is taken once

        def tail(w, first=first, i=i):
            return [_arr(trans), _arr(last), _arr(flat), d, 4 * i, min(4, d - 4 * i), _arr(g_trans),
                    int(with_trans and first), _arr(bufs[w].reshape(-1)), stride, 8 + 4 * i,
                    int(with_absgrad and first)]

        used = max(used, plan.launch(False, None, None, None, rec, tail))
    total = bufs[0]
    for b in bufs[1:used - 1]:
        total += b
    full = torch.zeros(n, stride)
    if len(plan.perm):  # the last worker's buffer is added as the rows are scattered to their splats
        last_buf = bufs[used - 1] if used > 1 else total
        wp.launch(tiles.scatter_grads, dim=len(plan.perm), device="cpu", inputs=[
            _arr(plan.perm), _arr(total), _arr(last_buf), int(used > 1), _arr(full)])
    return full[:, 0:2], full[:, 2:5], full[:, 5], full[:, 8:8 + d], full[:, 6:8]


def _backward_pixels(plan, means2d, conics, opacities, groups, g_groups, trans, last, g_trans, with_trans,
                     with_absgrad, n, d):
    """The per-pixel kernels' backward (a GPU; the CPU under the test hook): atomic sums per splat."""
    dev, dtype = means2d.device, means2d.dtype
    slots = 1 if plan.cuda else _threads()

    def zeros(*shape):
        return torch.zeros(*shape, dtype=dtype, device=dev)

    bufs = [dict(means2d=zeros(n, 2), conics=zeros(n, 3), opac=zeros(n), absgrad=zeros(n, 2),
                 feats=[zeros(n, 4) for _ in groups]) for _ in range(slots)]
    used = 1
    for i, (group, g_group) in enumerate(zip(groups, g_groups, strict=True)):
        first = i == 0  # the transmittance's and absgrad's share is taken once

        def tail(w, i=i, first=first, g_group=g_group):
            b = bufs[w]
            return [_arr(trans), _arr(last), _arr(g_group, wp.vec4), _arr(g_trans), int(with_trans and first),
                    _arr(b["means2d"], wp.vec2), _arr(b["conics"], wp.vec3), _arr(b["opac"]),
                    _arr(b["feats"][i], wp.vec4), _arr(b["absgrad"], wp.vec2), int(with_absgrad and first)]

        used = max(used, plan.launch(False, means2d, conics, opacities, group, tail))
    total = bufs[0]
    for b in bufs[1:used]:
        for key in ("means2d", "conics", "opac", "absgrad"):
            total[key] += b[key]
        for mine, theirs in zip(total["feats"], b["feats"], strict=True):
            mine += theirs
    g_feats = torch.cat(total["feats"], dim=1)[:, :d] if len(groups) > 1 else total["feats"][0][:, :d]
    return total["means2d"], total["conics"], total["opac"], g_feats, total["absgrad"]


def composite_camera(means2d: Tensor, conics: Tensor, opacities: Tensor, feats: Tensor, radii: Tensor, depths: Tensor,
                     width: int, height: int, tile_size: int | None = None, absgrad_sink: Tensor | None = None,
                     **_unused) -> tuple[Tensor, Tensor]:
    """Composite one camera's splats ([N, ...] inputs) into (colour [H, W, D], transmittance [H, W]): the
    signature of ``composite.composite_camera``. ``absgrad_sink`` [N + 1, 2] receives gsplat's absgrad."""
    plan = _Plan(means2d, conics, opacities, radii, depths, width, height)
    return _Composite.apply(means2d, conics, opacities, feats, plan, absgrad_sink)


def _composite_any(means2d, conics, opacities, feats, radii, depths, width, height, tile_size=8, absgrad_sink=None,
                   **chunking):
    if absgrad_sink is not None and feats.shape[1] > 4:
        # absgrad sums |per-pixel gradient| over all channels at once; the kernels take 4 channels a launch.
        from .composite import composite_camera as torch_composite

        return torch_composite(means2d, conics, opacities, feats, radii, depths, width, height, tile_size=tile_size,
                               absgrad_sink=absgrad_sink, **chunking)
    return composite_camera(means2d, conics, opacities, feats, radii, depths, width, height,
                            absgrad_sink=absgrad_sink)


# ---- projection and SH colours (the CPU) ----------------------------------------------------------


def _cameras(viewmats: Tensor, Ks: Tensor, width: int, height: int, eps2d: float, near: float, far: float,
             radius_clip: float, antialiased: bool) -> list:
    cams = []
    for view, k in zip(viewmats.detach().double().tolist(), Ks.detach().double().tolist(), strict=True):
        cam = geometry.Camera()
        cam.rot = wp.mat33(*view[0][:3], *view[1][:3], *view[2][:3])
        cam.trans = wp.vec3(view[0][3], view[1][3], view[2][3])
        cam.fx, cam.fy, cam.cx, cam.cy = k[0][0], k[1][1], k[0][2], k[1][2]
        cam.width, cam.height = width, height
        cam.eps2d, cam.near, cam.far, cam.radius_clip = eps2d, near, far, radius_clip
        cam.antialiased = int(antialiased)
        cams.append(cam)
    return cams


def _per_splat_cpu(kernel, n: int, head: list, tail: list) -> None:
    """``kernel`` over splats [0, n) on the CPU's threads, in ranges (each launch's first splat after ``head``)."""
    if n:
        # the same work for every splat: two ranges a worker balance the threads, each launch costs ~50 us
        _on_cpu_threads(n, 16384, lambda a, b, _w: wp.launch(kernel, dim=b - a, inputs=[*head, a, *tail],
                                                             device="cpu"), per_worker=2, least=4096)


class _Project(torch.autograd.Function):
    """``projection.project`` for every camera as one autograd node (``warp_geometry.project_*``)."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, cams):
        means, quats, scales, opacities = (t.detach().contiguous() for t in (means, quats, scales, opacities))
        c, n = len(cams), means.shape[0]
        means2d, conics = torch.empty(c, n, 2), torch.empty(c, n, 3)
        depths, opac = torch.empty(c, n), torch.empty(c, n)
        radii = torch.empty(c, n, 2, dtype=torch.int32)
        inputs = [_arr(means, wp.vec3), _arr(quats, wp.vec4), _arr(scales, wp.vec3), _arr(opacities)]
        for i, cam in enumerate(cams):
            _per_splat_cpu(geometry.project_forward, n, [*inputs, cam], [
                _arr(means2d[i], wp.vec2), _arr(conics[i], wp.vec3), _arr(depths[i]), _arr(radii[i], wp.vec2i),
                _arr(opac[i])])
        ctx.cams = cams
        ctx.save_for_backward(means, quats, scales, opacities, radii)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii, opac

    @staticmethod
    def backward(ctx, g_means2d, g_conics, g_depths, _g_radii, g_opac):
        means, quats, scales, opacities, radii = ctx.saved_tensors
        c, n = len(ctx.cams), means.shape[0]

        def grad(g, *shape):
            return torch.zeros(c, n, *shape) if g is None else g.contiguous()

        g_means2d, g_conics, g_depths, g_opac = grad(g_means2d, 2), grad(g_conics, 3), grad(g_depths), grad(g_opac)
        out = torch.zeros(n, 3), torch.zeros(n, 4), torch.zeros(n, 3), torch.zeros(n)
        inputs = [_arr(means, wp.vec3), _arr(quats, wp.vec4), _arr(scales, wp.vec3), _arr(opacities)]
        for i, cam in enumerate(ctx.cams):
            _per_splat_cpu(geometry.project_backward, n, [*inputs, cam], [
                _arr(radii[i], wp.vec2i), _arr(g_means2d[i], wp.vec2), _arr(g_conics[i], wp.vec3),
                _arr(g_depths[i]), _arr(g_opac[i]), _arr(out[0], wp.vec3), _arr(out[1], wp.vec4),
                _arr(out[2], wp.vec3), _arr(out[3])])
        return (*out, None)


class _Colours(torch.autograd.Function):
    """``max(eval_sh(degree, means - camera centre, coeffs) + 0.5, 0)`` for every camera ([C, N, 3])."""

    @staticmethod
    def forward(ctx, means, coeffs, centres, degree):
        means, coeffs = means.detach().contiguous(), coeffs.detach().contiguous()
        n, stride = means.shape[0], coeffs.shape[1] * 3
        colours = torch.empty(len(centres), n, 3)
        for i, centre in enumerate(centres):
            _per_splat_cpu(geometry.sh_forward, n, [_arr(means, wp.vec3), _arr(coeffs.reshape(-1)), stride, degree,
                                                    wp.vec3(*centre)], [_arr(colours[i], wp.vec3)])
        ctx.centres, ctx.degree = centres, degree
        ctx.save_for_backward(means, coeffs)
        return colours

    @staticmethod
    def backward(ctx, g_colours):
        means, coeffs = ctx.saved_tensors
        n, stride = means.shape[0], coeffs.shape[1] * 3
        g_colours = g_colours.contiguous()
        # written over by the first camera's kernel (every coefficient, and the means when they take a gradient)
        new = torch.empty if ctx.centres else torch.zeros
        g_means, g_coeffs = new(n, 3), new(coeffs.shape)
        with_means = int(ctx.needs_input_grad[0])
        for i, centre in enumerate(ctx.centres):
            _per_splat_cpu(geometry.sh_backward, n, [_arr(means, wp.vec3), _arr(coeffs.reshape(-1)), stride,
                                                     ctx.degree, wp.vec3(*centre)], [
                _arr(g_colours[i], wp.vec3), _arr(g_coeffs.reshape(-1)), _arr(g_means, wp.vec3), with_means,
                int(i == 0)])
        return (g_means if with_means else None), g_coeffs, None, None


def _compiled_geometry(means: Tensor, viewmats: Tensor, Ks: Tensor) -> bool:
    """Projection and SH as kernels: on the CPU, when the cameras take no gradient (else torch's ops)."""
    return (means.device.type == "cpu" and means.shape[0] > 0 and not viewmats.requires_grad
            and not Ks.requires_grad)


def _project(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d=0.3, near_plane=0.01,
             far_plane=1e10, radius_clip=0.0, antialiased=False):
    from .projection import Projected, project

    if not _compiled_geometry(means, viewmats, Ks):
        return project(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d=eps2d,
                       near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, antialiased=antialiased)
    cams = _cameras(viewmats, Ks, width, height, eps2d, near_plane, far_plane, radius_clip, antialiased)
    means2d, conics, depths, radii, opac = _Project.apply(means, quats, scales, opacities, cams)
    return Projected(means2d=means2d, conics=conics, depths=depths, radii=radii, opacities=opac)


def _colours(degree: int, means: Tensor, coeffs: Tensor, viewmats: Tensor) -> Tensor | None:
    """[C, N, 3] SH colours from [N, K, 3] coefficients, or None where torch's ops are to do it."""
    if not _compiled_geometry(means, viewmats, viewmats) or coeffs.dim() != 3:
        return None
    rot, trans = viewmats[:, :3, :3].detach(), viewmats[:, :3, 3:].detach()
    centres = (-(rot.transpose(1, 2) @ trans)[..., 0]).tolist()
    return _Colours.apply(means, coeffs, centres, degree)


def rasterize_warp(*args, **kwargs) -> tuple[Tensor, Tensor, dict]:
    """``rasterize``'s work with the compiled compositor (float32 tensors on the CPU or a CUDA GPU); on the CPU
    projection and SH colours are kernels too."""
    from .torch_backend import rasterize_torch

    means = args[0] if args else kwargs["means"]
    reason = prepare(means.device)
    if reason:
        raise CompileError(f"the compiled rasterizer is not available: {reason}")
    return rasterize_torch(*args, composite=_composite_any, project=_project, colours=_colours, name="warp",
                           **kwargs)
