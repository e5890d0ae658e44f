"""The machine's own ceilings: memory copy bandwidth and dense matrix rate per data type.

Introduced in lab 00 (tour). Later labs quote results as a percentage of these measured figures
rather than of a datasheet. They are measured once per machine and PyTorch version and cached in
the course's cache folder as JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from . import bench
from .env import cache_dir, detect

#: Matrix data types measured on a GPU, with the compute capability they need.
GPU_MATMUL_DTYPES = {
    "fp32": (0, 0), "tf32": (8, 0), "fp16": (7, 0), "bf16": (8, 0), "fp8": (8, 9), "int8": (7, 5),
}


@dataclass
class Ceilings:
    machine: str
    device: str
    torch: str
    copy_gbps: float                       # (bytes read + bytes written) / time
    copy_bytes: int
    matmul_tflops: dict[str, float]        # TOP/s for int8
    matmul_shape: tuple[int, int, int]
    not_measured: dict[str, str] = field(default_factory=dict)   # dtype -> why

    def pct_of_copy(self, gbps: float) -> float:
        return 100.0 * gbps / self.copy_gbps

    def pct_of_matmul(self, tflops: float, dtype: str) -> float:
        if dtype not in self.matmul_tflops:
            raise KeyError(f"no measured {dtype} matrix rate on this machine: {self.not_measured.get(dtype, '')}")
        return 100.0 * tflops / self.matmul_tflops[dtype]

    def rows(self) -> list[dict]:
        rows = [{"ceiling": "copy bandwidth", "value": round(self.copy_gbps, 1), "unit": "GB/s"}]
        for dtype, rate in self.matmul_tflops.items():
            unit = "TOP/s" if dtype == "int8" else "TFLOP/s"
            if self.device == "cpu":
                rate, unit = rate * 1e3, unit.replace("T", "G")
            rows.append({"ceiling": f"matmul {dtype}", "value": round(rate, 1), "unit": unit})
        return rows


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _copy_gbps(device: str, nbytes: int, measure_ms: float) -> float:
    import torch

    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    m = bench.measure(lambda: dst.copy_(src), name="copy", backend="PyTorch", device=device,
                      warmup_ms=100, measure_ms=measure_ms, min_iters=5)
    return 2 * nbytes / (m.latency_ms.median / 1e3) / 1e9


def _matmul_fn(dtype: str, n: int, device: str):
    """A closure doing one n×n×n product in `dtype` on random data, and its operation count."""
    import torch

    gen = torch.Generator(device=device).manual_seed(0)
    if dtype == "int8":
        a = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=device, generator=gen)
        b = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=device, generator=gen).t()
        return lambda: torch._int_mm(a, b)
    if dtype == "fp8":
        a = torch.randn(n, n, device=device, generator=gen).to(torch.float8_e4m3fn)
        b = torch.randn(n, n, device=device, generator=gen).to(torch.float8_e4m3fn).t()  # column-major B
        one = torch.ones((), device=device)
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float16)
    torch_dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16,
                   "bf16": torch.bfloat16}[dtype]
    a = torch.randn(n, n, device=device, generator=gen, dtype=torch_dtype)
    b = torch.randn(n, n, device=device, generator=gen, dtype=torch_dtype)
    tf32 = dtype == "tf32"

    def run():
        # TF32 is a mode of FP32 matmul; set it per call so the two rows measure different things.
        torch.backends.cuda.matmul.allow_tf32 = tf32
        return a @ b

    return run


def measure_ceilings(*, matmul_n: int | None = None, copy_bytes: int | None = None,
                     measure_ms: float = 300.0) -> Ceilings:
    """Measure this machine's ceilings now (tens of seconds on a GPU, a few on a CPU)."""
    import torch

    env = detect()
    device = env.device
    if device == "cuda":
        n = matmul_n or 8192
        nbytes = copy_bytes or 1 << 30
        dtypes = {d: cc for d, cc in GPU_MATMUL_DTYPES.items()}
    else:
        n = matmul_n or 1024
        nbytes = copy_bytes or 1 << 26
        dtypes = {"fp32": (0, 0)}
    rates: dict[str, float] = {}
    skipped: dict[str, str] = {}
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        for dtype, floor in dtypes.items():
            if device == "cuda" and (env.compute_capability or (0, 0)) < floor:
                skipped[dtype] = f"needs compute capability {floor[0]}.{floor[1]}"
                continue
            try:
                fn = _matmul_fn(dtype, n, device)
                m = bench.measure(fn, name=f"matmul {dtype}", backend="PyTorch", device=device,
                                  warmup_ms=200, measure_ms=measure_ms, min_iters=5)
            except (RuntimeError, TypeError) as exc:   # an op this PyTorch build lacks
                skipped[dtype] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                continue
            rates[dtype] = 2 * n**3 / (m.latency_ms.median / 1e3) / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous_tf32
    return Ceilings(
        machine=env.machine, device=device, torch=env.torch or "", copy_bytes=nbytes,
        copy_gbps=_copy_gbps(device, nbytes, measure_ms), matmul_tflops=rates,
        matmul_shape=(n, n, n), not_measured=skipped,
    )


def get_ceilings(refresh: bool = False) -> Ceilings:
    """The cached ceilings of this machine, measured on first use (or when `refresh`)."""
    env = detect()
    path = cache_dir() / f"ceilings-{_slug(env.machine)}-torch{_slug(env.torch or 'none')}.json"
    if path.exists() and not refresh:
        try:
            data = json.loads(path.read_text())
            data["matmul_shape"] = tuple(data["matmul_shape"])
            return Ceilings(**data)
        except (ValueError, TypeError, KeyError):
            path.unlink()   # an unreadable cache entry is re-measured
    ceilings = measure_ceilings()
    path.write_text(json.dumps(asdict(ceilings), indent=1))
    return ceilings
