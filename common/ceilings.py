"""The machine's own ceilings: memory copy bandwidth and dense matrix rate per data type.

Introduced in lab 00 (tour). Later labs quote results as a percentage of these measured figures
rather than of a datasheet. Each ceiling is the best of a small sweep: copies of several sizes (at
least 1 GiB on a GPU; GB/s count bytes read + bytes written) and products of several shapes per data
type (square 4096-16384 on a GPU, plus the GEMM shapes a caller passes), each timed long enough for
the clocks to settle; the shape or size that gave the best is kept with it, and the datasheet peak of
the GPU, where known, is shown beside it.

No figure is more than 100% of its ceiling (:meth:`Ceilings.pct_of`): a ceiling is the best rate
this machine has been seen to reach, so a figure a little above it (clocks and noise: up to
:data:`LIFT_LIMIT`) raises the ceiling to that figure, with a :class:`CeilingWarning`, and reads 100%;
a figure far above it counts something the ceiling does not (bytes or operations counted
differently) and raises :class:`CeilingExceeded`.

Ceilings are cached per machine and PyTorch version in the course's cache folder as JSON, written
atomically; a cached file is validated when read (types, finite and positive values, plausible for
the GPU it names) and re-measured, with a warning, when missing, corrupt or implausible.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from . import bench
from .env import cache_dir, detect
from .files import write_text_atomic

#: Matrix data types measured on a GPU, with the compute capability they need.
GPU_MATMUL_DTYPES = {
    "fp32": (0, 0), "tf32": (8, 0), "fp16": (7, 0), "bf16": (8, 0), "fp8": (8, 9), "int8": (7, 5),
}
#: Square product sizes swept per data type, and copy sizes swept, on a GPU and on a CPU.
GPU_SQUARE_SIZES = (4096, 8192, 12288, 16384)
CPU_SQUARE_SIZES = (512, 1024)
GPU_COPY_BYTES = (1 << 30, 2 << 30, 4 << 30)
CPU_COPY_BYTES = (1 << 26, 1 << 27)
#: A figure up to this factor above its ceiling raises the ceiling (clocks, noise); beyond, it is an error.
LIFT_LIMIT = 1.25
#: Schema of the cached file: a file of another version is measured again.
VERSION = 2


class CeilingExceeded(ValueError):
    """A figure far above its measured ceiling: it counts something the ceiling does not."""


class CeilingWarning(UserWarning):
    """A figure a little above its ceiling raised the ceiling (the best rate seen on this machine)."""


class CeilingsCacheWarning(UserWarning):
    """The cached ceilings could not be used (missing fields, corrupt, implausible) and are re-measured."""


@dataclass(frozen=True)
class Datasheet:
    """A GPU's paper peaks: memory bandwidth (GB/s) and dense (no sparsity) matrix rates (TFLOP/s, TOP/s
    for int8), FP16/BF16/FP8 with FP32 accumulation, as PyTorch's products run them."""

    name: str
    copy_gbps: float
    matmul_tflops: dict[str, float]


def _sheet(name, copy_gbps, fp32, tf32, fp16, fp8=None, int8=None) -> Datasheet:
    rates = {"fp32": fp32, "tf32": tf32, "fp16": fp16, "bf16": fp16, "fp8": fp8, "int8": int8}
    return Datasheet(name, copy_gbps, {k: v for k, v in rates.items() if v is not None})


#: NVIDIA's datasheet figures, matched against the device name in order (first match wins).
DATASHEETS: tuple[tuple[str, Datasheet], ...] = (
    (r"H200 NVL", _sheet("H200 NVL", 4800, 60, 417.5, 835.5, 1670.5, 1670.5)),
    (r"H200", _sheet("H200 SXM", 4800, 67, 494.7, 989.4, 1978.9, 1978.9)),
    (r"H100 NVL", _sheet("H100 NVL", 3900, 60, 417.5, 835.5, 1670.5, 1670.5)),
    (r"H100.*PCIe", _sheet("H100 PCIe", 2000, 51, 378, 756, 1513, 1513)),
    (r"H100", _sheet("H100 SXM", 3350, 67, 494.7, 989.4, 1978.9, 1978.9)),
    (r"A100.*80GB.*PCIe|A100 80GB PCIe", _sheet("A100 80GB PCIe", 1935, 19.5, 156, 312, None, 624)),
    (r"A100.*80GB", _sheet("A100 80GB SXM", 2039, 19.5, 156, 312, None, 624)),
    (r"A100", _sheet("A100 40GB", 1555, 19.5, 156, 312, None, 624)),
    (r"L40S", _sheet("L40S", 864, 91.6, 183, 362, 733, 733)),
    (r"\bL4\b", _sheet("L4", 300, 30.3, 60, 121, 242.5, 242.5)),
    (r"RTX 4090", _sheet("GeForce RTX 4090", 1008, 82.6, 82.6, 165.2, 330.3, 660.6)),
    (r"\bA10G?\b", _sheet("A10", 600, 31.2, 62.5, 125, None, 250)),
    (r"\bT4\b", _sheet("T4", 320, 8.1, None, 65, None, 130)),
)


def datasheet_for(device_name: str | None) -> Datasheet | None:
    """The datasheet entry of a GPU by its device name (``torch.cuda.get_device_name``), None if unknown."""
    for pattern, sheet in DATASHEETS:
        if device_name and re.search(pattern, device_name):
            return sheet
    return None


def pct_of(value: float, ceiling: float, what: str = "ceiling") -> float:
    """`value` as a percentage of `ceiling`, never above 100.

    Up to :data:`LIFT_LIMIT` above, the figure is the new best (clocks, noise): 100, with a
    :class:`CeilingWarning`. Further above, it counts something the ceiling does not: :class:`CeilingExceeded`.
    """
    if not (math.isfinite(ceiling) and ceiling > 0):
        raise ValueError(f"no usable {what} ceiling ({ceiling!r})")
    pct = 100.0 * value / ceiling
    if pct <= 100.0:
        return pct
    if value > LIFT_LIMIT * ceiling:
        raise CeilingExceeded(
            f"{value:.4g} is {pct:.0f}% of the measured {what} ceiling ({ceiling:.4g}): it cannot be; the figure "
            f"counts something the ceiling does not (bytes or operations), or the ceiling is stale "
            f"(ceilings.get_ceilings(refresh=True))")
    warnings.warn(CeilingWarning(f"{value:.4g} is above the measured {what} ceiling ({ceiling:.4g}, {pct:.1f}%): "
                                 f"it is the best seen on this machine, read as 100%"), stacklevel=2)
    return 100.0


@dataclass
class Ceilings:
    machine: str
    device: str
    torch: str
    copy_gbps: float                       # (bytes read + bytes written) / time, best over copy sizes
    copy_bytes: int                        # the copy size that gave it
    matmul_tflops: dict[str, float]        # best over shapes; TOP/s for int8
    matmul_shape: tuple[int, int, int]     # the shape that gave the FP16 best (FP32's on a CPU)
    not_measured: dict[str, str] = field(default_factory=dict)   # dtype -> why
    matmul_shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)   # dtype -> shape of its best
    copy_sweep: dict[str, float] = field(default_factory=dict)                    # bytes -> GB/s
    matmul_sweep: dict[str, dict[str, float]] = field(default_factory=dict)       # dtype -> "MxNxK" -> rate
    measured_at: str = ""
    version: int = VERSION
    lifted: dict[str, float] = field(default_factory=dict)   # ceilings a figure raised: name -> measured value

    @property
    def datasheet(self) -> Datasheet | None:
        return datasheet_for(self.machine) if self.device == "cuda" else None

    def ceiling(self, what: str) -> float:
        """The ceiling named "copy" or by a matrix data type ("fp16", ...)."""
        if what == "copy":
            return self.copy_gbps
        if what not in self.matmul_tflops:
            raise KeyError(f"no measured {what} matrix rate on this machine: {self.not_measured.get(what, '')}")
        return self.matmul_tflops[what]

    def pct_of(self, value: float, what: str) -> float:
        """`value` (GB/s for "copy", TFLOP/s for a data type) as a % of its ceiling, never above 100.

        A figure up to :data:`LIFT_LIMIT` above the ceiling raises the ceiling to it (the best rate
        seen on this machine, recorded in :attr:`lifted`; a :class:`CeilingWarning` says so) and reads
        100%; further above, :class:`CeilingExceeded`.
        """
        ceiling = self.ceiling(what)
        pct = pct_of(value, ceiling, what)
        if value > ceiling:
            self.lifted.setdefault(what, ceiling)
            if what == "copy":
                self.copy_gbps = value
            else:
                self.matmul_tflops[what] = value
        return pct

    def pcts_of(self, values: Sequence[float], what: str, exceeded_note: str) -> list[tuple[float, str]]:
        """Each of `values` as (% of the ceiling `what`, note), all read against one ceiling.

        The fastest is offered first: up to :data:`LIFT_LIMIT` above, it raises the ceiling (the best
        rate seen here), so every value is read against the raised one. A value further above counts
        something the ceiling does not: NaN, with `exceeded_note` (``{ceiling}`` is replaced by the
        ceiling). A NaN value (nothing moved or computed) stays NaN with no note.
        """
        finite = [v for v in values if not math.isnan(v)]
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CeilingWarning)
            if finite:
                try:
                    self.pct_of(max(finite), what)
                except CeilingExceeded:
                    pass
            for value in values:
                if math.isnan(value):
                    out.append((float("nan"), ""))
                    continue
                try:
                    out.append((self.pct_of(value, what), ""))
                except CeilingExceeded:
                    out.append((float("nan"), exceeded_note.format(ceiling=self.ceiling(what))))
        return out

    def pct_of_copy(self, gbps: float) -> float:
        return self.pct_of(gbps, "copy")

    def pct_of_matmul(self, tflops: float, dtype: str) -> float:
        return self.pct_of(tflops, dtype)

    def rows(self) -> list[dict]:
        """One row per ceiling: the measured value and what gave it, the datasheet peak beside it."""
        sheet = self.datasheet
        gpu = self.device == "cuda"

        def row(name, value, unit, best_at, paper):
            scale = 1.0 if gpu or unit == "GB/s" else 1e3   # a CPU's matrix rates read in GFLOP/s
            shown_unit = unit if scale == 1.0 else unit.replace("T", "G")
            return {"ceiling": name, "value": round(value * scale, 1), "unit": shown_unit, "best_at": best_at,
                    "datasheet": round(paper * scale, 1) if paper else "unknown",
                    "pct_of_datasheet": round(100 * value / paper, 1) if paper else float("nan")}

        rows = [row("copy bandwidth", self.copy_gbps, "GB/s", _size_text(self.copy_bytes),
                    sheet.copy_gbps if sheet else None)]
        for dtype, rate in self.matmul_tflops.items():
            shape = self.matmul_shapes.get(dtype, self.matmul_shape)
            rows.append(row(f"matmul {dtype}", rate, "TOP/s" if dtype == "int8" else "TFLOP/s",
                            "x".join(map(str, shape)), sheet.matmul_tflops.get(dtype) if sheet else None))
        return rows


def _size_text(nbytes: int) -> str:
    return f"{nbytes / 2**30:g} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:g} MiB"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _copy_gbps(device: str, nbytes: int, measure_ms: float) -> float:
    import torch

    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    m = bench.measure(lambda: dst.copy_(src), name="copy", backend="PyTorch", device=device,
                      warmup_ms=200, measure_ms=measure_ms, min_iters=5, kernel_time=False)
    return 2 * nbytes / (m.latency_ms.median / 1e3) / 1e9


def _matmul_fn(dtype: str, shape: tuple[int, int, int], device: str):
    """A closure doing one (m x k) @ (k x n) product in `dtype` on random data."""
    import torch

    m, n, k = shape
    gen = torch.Generator(device=device).manual_seed(0)
    if dtype == "int8":
        a = torch.randint(-64, 64, (m, k), dtype=torch.int8, device=device, generator=gen)
        b = torch.randint(-64, 64, (n, k), dtype=torch.int8, device=device, generator=gen).t()
        return lambda: torch._int_mm(a, b)
    if dtype == "fp8":
        a = torch.randn(m, k, device=device, generator=gen).to(torch.float8_e4m3fn)
        b = torch.randn(n, k, device=device, generator=gen).to(torch.float8_e4m3fn).t()  # column-major B
        one = torch.ones((), device=device)
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float16)
    torch_dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
                   "bf16": torch.bfloat16}[dtype]
    a = torch.randn(m, k, device=device, generator=gen, dtype=torch_dtype)
    b = torch.randn(k, n, device=device, generator=gen, dtype=torch_dtype)
    tf32 = dtype == "tf32"

    def run():
        # TF32 is a mode of FP32 matmul; set it per call so the two rows measure different things.
        torch.backends.cuda.matmul.allow_tf32 = tf32
        return a @ b

    return run


def _fits(device: str, nbytes: int) -> bool:
    """Whether buffers of `nbytes` in all fit comfortably in the GPU's free memory (always on a CPU)."""
    if device != "cuda":
        return True
    import torch

    free, _ = torch.cuda.mem_get_info()
    return nbytes <= 0.8 * free


def _matmul_bytes(dtype: str, shape: tuple[int, int, int]) -> int:
    m, n, k = shape
    size = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}[dtype]
    out = {"fp8": 2, "int8": 4}.get(dtype, size)
    return size * (m * k + k * n) + out * m * n


def measure_ceilings(*, matmul_n: int | None = None, copy_bytes: int | None = None, measure_ms: float = 300.0,
                     shapes: Sequence[tuple[int, int, int]] = (), sizes: Sequence[int] | None = None,
                     copy_sizes: Sequence[int] | None = None) -> Ceilings:
    """Measure this machine's ceilings now: the best of a sweep (about a minute on a GPU, seconds on a CPU).

    `sizes` are the square products swept (default :data:`GPU_SQUARE_SIZES` / :data:`CPU_SQUARE_SIZES`;
    `matmul_n` alone sweeps that one size), `shapes` further (M, N, K) products, such as the GEMMs a lab
    uses; `copy_sizes` the copies (default :data:`GPU_COPY_BYTES` / :data:`CPU_COPY_BYTES`; `copy_bytes`
    alone copies that one size). Each point warms up, then is timed for `measure_ms`.
    """
    import torch

    env = detect()
    device = env.device
    gpu = device == "cuda"
    if sizes is None:
        sizes = (matmul_n,) if matmul_n else (GPU_SQUARE_SIZES if gpu else CPU_SQUARE_SIZES)
    if copy_sizes is None:
        copy_sizes = (copy_bytes,) if copy_bytes else (GPU_COPY_BYTES if gpu else CPU_COPY_BYTES)
    sweep_shapes = [(n, n, n) for n in sizes] + [(int(m), int(n), int(k)) for m, n, k in shapes]
    dtypes = GPU_MATMUL_DTYPES if gpu else {"fp32": (0, 0)}
    rates: dict[str, float] = {}
    best_shapes: dict[str, tuple[int, int, int]] = {}
    matmul_sweep: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        for dtype, floor in dtypes.items():
            if gpu and (env.compute_capability or (0, 0)) < floor:
                skipped[dtype] = f"needs compute capability {floor[0]}.{floor[1]}"
                continue
            for shape in sweep_shapes:
                if not _fits(device, _matmul_bytes(dtype, shape)):
                    continue
                try:
                    fn = _matmul_fn(dtype, shape, device)
                    m = bench.measure(fn, name=f"matmul {dtype}", backend="PyTorch", device=device,
                                      warmup_ms=200, measure_ms=measure_ms, min_iters=5, kernel_time=False)
                except (RuntimeError, TypeError) as exc:   # an op this PyTorch build lacks, or a shape it refuses
                    skipped.setdefault(dtype, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
                    continue
                finally:
                    fn = None
                rate = 2 * math.prod(shape) / (m.latency_ms.median / 1e3) / 1e12
                matmul_sweep.setdefault(dtype, {})["x".join(map(str, shape))] = rate
                if rate > rates.get(dtype, 0.0):
                    rates[dtype], best_shapes[dtype] = rate, shape
            if dtype in rates:
                skipped.pop(dtype, None)
            if gpu:
                torch.cuda.empty_cache()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous_tf32
    copy_sweep: dict[str, float] = {}
    for nbytes in copy_sizes:
        if _fits(device, 2 * nbytes):
            copy_sweep[str(nbytes)] = _copy_gbps(device, nbytes, measure_ms)
            if gpu:
                torch.cuda.empty_cache()
    if not copy_sweep:
        raise RuntimeError(f"no copy size of {list(copy_sizes)} fits in this device's free memory")
    best_copy = max(copy_sweep, key=copy_sweep.__getitem__)
    headline = "fp16" if "fp16" in best_shapes else next(iter(best_shapes), None)
    return Ceilings(
        machine=env.machine, device=device, torch=env.torch or "", copy_gbps=copy_sweep[best_copy],
        copy_bytes=int(best_copy), matmul_tflops=rates,
        matmul_shape=best_shapes[headline] if headline else sweep_shapes[0], not_measured=skipped,
        matmul_shapes=best_shapes, copy_sweep=copy_sweep, matmul_sweep=matmul_sweep,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


# -- the cache: validated on read, written atomically ---------------------------------------------

#: Bounds a measured ceiling must lie within where no datasheet is known (GB/s; TFLOP/s or TOP/s).
_GENERIC_BOUNDS = {"cuda": {"copy": (10.0, 20_000.0), "matmul": (0.1, 20_000.0)},
                   "cpu": {"copy": (0.1, 5_000.0), "matmul": (1e-5, 500.0)}}
#: A measured ceiling must lie within these fractions of its datasheet peak.
_DATASHEET_BOUNDS = (0.05, 1.15)


def _positive(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} is {type(value).__name__} {value!r}, not a number")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what} = {value!r} is not a finite positive number")
    return float(value)


def _shape(value, what: str) -> tuple[int, int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in value)):
        raise ValueError(f"{what} = {value!r} is not three positive integers")
    m, n, k = value
    return (m, n, k)


def _check_plausible(c: Ceilings) -> None:
    sheet = c.datasheet
    if sheet is not None:
        lo, hi = _DATASHEET_BOUNDS
        papers = [("copy", c.copy_gbps, sheet.copy_gbps)] + [
            (d, r, sheet.matmul_tflops[d]) for d, r in c.matmul_tflops.items() if d in sheet.matmul_tflops]
        for what, value, paper in papers:
            if not lo * paper <= value <= hi * paper:
                raise ValueError(f"{what} {value:.4g} is implausible for a {sheet.name} (datasheet {paper:.4g})")
        return
    bounds = _GENERIC_BOUNDS["cuda" if c.device == "cuda" else "cpu"]
    generic = [("copy", c.copy_gbps, bounds["copy"])] + [(d, r, bounds["matmul"]) for d, r in c.matmul_tflops.items()]
    for what, value, (lo, hi) in generic:
        if not lo <= value <= hi:
            raise ValueError(f"{what} {value:.4g} lies outside the plausible {lo:g}-{hi:g}")


def validate(data, *, machine: str, torch_version: str) -> Ceilings:
    """Ceilings from a cached file's JSON, checked: the right machine and PyTorch, this schema version,
    every value of the right type, finite, positive and plausible for the GPU named. ValueError otherwise."""
    if not isinstance(data, dict):
        raise ValueError(f"the file holds {type(data).__name__}, not an object")
    if data.get("version") != VERSION:
        raise ValueError(f"schema version {data.get('version')!r}, not {VERSION} (measured by an older course)")
    for key, want in (("machine", machine), ("torch", torch_version)):
        if data.get(key) != want:
            raise ValueError(f"{key} {data.get(key)!r} is not this one ({want!r})")
    if data.get("device") not in ("cuda", "cpu"):
        raise ValueError(f"device {data.get('device')!r}")
    rates = data.get("matmul_tflops")
    if not isinstance(rates, dict) or not rates:
        raise ValueError("no matrix rates")
    shapes = data.get("matmul_shapes", {})
    if not isinstance(shapes, dict):
        raise ValueError("matmul_shapes is not an object")
    copy_bytes = data.get("copy_bytes")
    if isinstance(copy_bytes, bool) or not isinstance(copy_bytes, int) or copy_bytes <= 0:
        raise ValueError(f"copy_bytes = {copy_bytes!r}")
    for key in ("not_measured", "copy_sweep", "matmul_sweep", "lifted"):
        if not isinstance(data.get(key, {}), dict):
            raise ValueError(f"{key} is not an object")
    c = Ceilings(
        machine=data["machine"], device=data["device"], torch=data["torch"],
        copy_gbps=_positive(data.get("copy_gbps"), "copy_gbps"), copy_bytes=copy_bytes,
        matmul_tflops={str(d): _positive(r, f"matmul {d}") for d, r in rates.items()},
        matmul_shape=_shape(data.get("matmul_shape"), "matmul_shape"),
        not_measured={str(k): str(v) for k, v in data.get("not_measured", {}).items()},
        matmul_shapes={str(d): _shape(s, f"shape of {d}") for d, s in shapes.items()},
        copy_sweep={str(k): _positive(v, f"copy {k}") for k, v in data.get("copy_sweep", {}).items()},
        matmul_sweep={str(d): {str(s): _positive(r, f"matmul {d} {s}") for s, r in sw.items()}
                      for d, sw in data.get("matmul_sweep", {}).items()},
        measured_at=str(data.get("measured_at", "")), version=VERSION,
    )
    _check_plausible(c)
    return c


def cache_path() -> Path:
    env = detect()
    return cache_dir() / f"ceilings-{_slug(env.machine)}-torch{_slug(env.torch or 'none')}.json"


#: Ceilings read in this process, by path, with the file's (mtime, size) when read: figures a lab
#: lifts a ceiling with stay lifted while the file is unchanged.
_READ: dict[Path, tuple[tuple[int, int], Ceilings]] = {}


def _read(path: Path) -> Ceilings | None:
    """The validated cached ceilings at `path`; None (with a warning unless simply absent) otherwise."""
    env = detect()
    try:
        stat = path.stat()
        signature = (stat.st_mtime_ns, stat.st_size)
        if path in _READ and _READ[path][0] == signature:
            return _READ[path][1]
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        warnings.warn(CeilingsCacheWarning(f"cached ceilings unreadable ({exc}): measuring them again"), stacklevel=3)
        return None
    try:
        ceilings = validate(json.loads(text), machine=env.machine, torch_version=env.torch or "")
    except ValueError as exc:   # JSONDecodeError is a ValueError
        warnings.warn(CeilingsCacheWarning(f"cached ceilings rejected ({exc}): measuring them again"), stacklevel=3)
        return None
    _READ[path] = (signature, ceilings)
    return ceilings


def cached_ceilings() -> Ceilings | None:
    """The ceilings cached on this machine, validated, or None; never measures."""
    return _read(cache_path())


def save(ceilings: Ceilings, path: Path | None = None) -> Path:
    """Write `ceilings` to the cache atomically (readers see the old file or the new one, whole)."""
    path = path or cache_path()
    data = asdict(ceilings)
    data["lifted"] = {}   # a lift is this process's observation, not a measurement
    write_text_atomic(path, json.dumps(data, indent=1))
    try:
        stat = path.stat()
        _READ[path] = ((stat.st_mtime_ns, stat.st_size), ceilings)
    except FileNotFoundError:   # replaced by another process in between: read it next time
        pass
    return path


def get_ceilings(refresh: bool = False, *, shapes: Sequence[tuple[int, int, int]] = ()) -> Ceilings:
    """The cached ceilings of this machine, measured on first use, when `refresh`, or when the cached
    file is missing, corrupt or implausible. `shapes` adds GEMM shapes to the sweep of a measurement."""
    path = cache_path()
    if not refresh:
        cached = _read(path)
        if cached is not None:
            return cached
    ceilings = measure_ceilings(shapes=shapes)
    save(ceilings, path)
    return ceilings
