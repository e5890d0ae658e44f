"""Timed operation cases: one operation with its reference check, timed in interleaved passes.

Introduced in lab 07 (MatMul alignment) and used by labs 08 (precision), 09 (sparsity) and 10
(builder): a :class:`Case` is one operation to time (`fn` enqueues it, `flops` counts it), checked
against an FP32 reference with :func:`checked` before it is timed; :func:`measure_cases` times a list
of them in interleaved passes; :func:`result_rows` turns the timings into TFLOP/s and a share of the
machine's measured matrix ceiling. :func:`gemm_case`, :func:`fp8_case` and :func:`int8_case` are the
plain matrix products labs 07 and 08 time.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from . import bench, checks

if TYPE_CHECKING:
    from .ceilings import Ceilings

#: Elements per 16 bytes: the multiple each precision's inner dimensions need on tensor cores.
ALIGNMENT = {"fp32": 4, "tf32": 4, "fp16": 8, "bf16": 8, "fp8": 16, "int8": 16}
#: PyTorch storage type of each precision (TF32 is FP32 storage with TF32 math allowed).
TORCH_DTYPE = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def alignment_of(k: int) -> int:
    """The largest of 1, 2, 4, 8, 16 that divides `k` (what a K of this size is aligned to)."""
    return max(m for m in (1, 2, 4, 8, 16) if k % m == 0)


def padded(k: int, multiple: int) -> int:
    """`k` rounded up to a multiple of `multiple`."""
    return -(-k // multiple) * multiple


@contextlib.contextmanager
def tf32_mode(enabled: bool) -> Iterator[None]:
    """FP32 matrix products and convolutions in TF32 (`enabled`) or in full FP32, restored on exit."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def random_tensor(shape: Sequence[int], *, device: str, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Seeded normal data: zeros would let a kernel skip work and prove nothing about correctness."""
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(tuple(shape), device=device, generator=gen).to(dtype)


@dataclass
class Case:
    """One operation to time: `fn` enqueues it, `flops` counts it, `error` is its checked accuracy."""

    label: str
    precision: str
    fn: Callable[[], Any]
    flops: int
    error: float = float("nan")
    params: dict = field(default_factory=dict)


def checked(case: Case, out: torch.Tensor, reference: torch.Tensor, tolerance: float | None = None,
            error: Callable[[torch.Tensor, torch.Tensor], float] | None = None) -> Case:
    """Record `case`'s relative error against the FP32 `reference` and refuse to time a wrong case.

    `tolerance` defaults to the one operation's tolerance of the case's precision
    (:data:`common.checks.TOLERANCE`); `error` to ‖out − ref‖/‖ref‖ on the CPU in float64 (labs 08 and
    09 pass their own for model outputs and for large GEMMs kept on the GPU).
    """
    measured = (error or checks.relative_error)(out.float(), reference.float())
    case.error = checks.verify(out, reference, case.label, precision=case.precision, scope="op",
                               tol=tolerance, error=measured)
    return case


def gemm_case(m: int, k: int, n: int, precision: str, *, device: str, seed: int = 0) -> Case:
    """(m, k) @ (k, n) in `precision` ("fp32", "tf32", "fp16", "bf16") on random data, checked first."""
    a = random_tensor((m, k), device=device, dtype=TORCH_DTYPE[precision], seed=seed)
    b = random_tensor((k, n), device=device, dtype=TORCH_DTYPE[precision], seed=seed + 1)
    tf32 = precision == "tf32"

    def run() -> torch.Tensor:
        torch.backends.cuda.matmul.allow_tf32 = tf32   # per call: cases of both kinds interleave
        return a @ b

    with tf32_mode(False):
        reference = a.float() @ b.float()
        out = run()
    case = Case(f"{precision} {m}x{k}x{n}", precision, run, 2 * m * k * n, params={"m": m, "k": k, "n": n})
    return checked(case, out, reference)


def fp8_operands(m: int, k: int, n: int, *, device: str, seed: int = 0):
    """FP8 (e4m3) operands for ``torch._scaled_mm``: A row-major (m, k), B column-major (k, n), unit scales."""
    a = random_tensor((m, k), device=device, dtype=torch.float32, seed=seed).to(torch.float8_e4m3fn)
    b = random_tensor((n, k), device=device, dtype=torch.float32, seed=seed + 1).to(torch.float8_e4m3fn).t()
    one = torch.ones((), device=device)
    return a, b, one


def fp8_case(m: int, k: int, n: int, *, device: str, seed: int = 0) -> Case:
    """An FP8 GEMM through ``torch._scaled_mm`` (FP16 output), checked against FP32 on the same FP8 values."""
    a, b, one = fp8_operands(m, k, n, device=device, seed=seed)
    run = lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float16)  # noqa: E731
    with tf32_mode(False):
        reference = a.float() @ b.float()
    case = Case(f"fp8 {m}x{k}x{n}", "fp8", run, 2 * m * k * n, params={"m": m, "k": k, "n": n})
    return checked(case, run(), reference)


def int8_case(m: int, k: int, n: int, *, device: str, seed: int = 0) -> Case:
    """An INT8 GEMM through ``torch._int_mm`` (INT32 out; B column-major, as its kernels take it),
    checked exact on its first rows. ``torch._int_mm`` refuses some shapes (on a GPU: K or N not a
    multiple of 8, M of 16 or less): the RuntimeError is left to the caller, as for FP8."""
    gen = torch.Generator(device=device).manual_seed(seed)
    a = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8, device=device)
    b = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8, device=device).t()
    run = lambda: torch._int_mm(a, b)  # noqa: E731
    rows = min(m, 32)
    exact = (a[:rows].double() @ b.double()).round().to(torch.int64)
    case = Case(f"int8 {m}x{k}x{n}", "int8", run, 2 * m * k * n, params={"m": m, "k": k, "n": n})
    case.error = float((run()[:rows].to(torch.int64) != exact).any())
    if case.error:
        raise checks.VerificationError(f"{case.label}: torch._int_mm differs from the exact product: do not time it")
    return case


def measure_cases(cases: Sequence[Case], *, device: str, passes: int = 2, warmup_ms: float = 40.0,
                  measure_ms: float = 60.0, progress: bool = True, desc: str = "cases") -> dict[str, list[bench.Measurement]]:
    """Time every case in `passes` interleaved passes (so that drift hits all cases alike), as
    :func:`common.bench.interleaved_passes` orders them."""
    stream = torch.cuda.Stream() if device == "cuda" else None
    by_label = {c.label: c for c in cases}
    bar = tqdm(total=passes * len(cases), desc=desc, disable=not progress, mininterval=2.0, leave=False)

    def one(label: str, _pass: int) -> bench.Measurement:
        case = by_label[label]
        m = bench.measure(case.fn, name=case.label, backend=f"PyTorch {case.precision}", device=device,
                          stream=stream, warmup_ms=warmup_ms, measure_ms=measure_ms)
        bar.update()
        return m

    try:
        runs = bench.interleaved_passes(list(by_label), passes, one)
    finally:
        bar.close()
        torch.backends.cuda.matmul.allow_tf32 = False   # PyTorch's default, whatever the last case set
    return runs


def result_rows(cases: Sequence[Case], runs: dict[str, list[bench.Measurement]],
                ceilings: "Ceilings | None" = None) -> list[dict]:
    """Per case: median latency over passes, TFLOP/s = flops / latency, % of the measured ceiling."""
    rows = []
    for case in cases:
        medians = [m.latency_ms.median for m in runs[case.label]]
        latency_ms = statistics.median(medians)
        tflops = case.flops / (latency_ms / 1e3) / 1e12
        row = {"case": case.label, "precision": case.precision, **case.params, "latency_ms": latency_ms,
               "tflop_per_s": tflops, "spread_pct": bench.spread_pct(medians) if len(medians) > 1 else float("nan"),
               "rel_error": case.error}
        if "k" in case.params:
            row["k_aligned_to"] = alignment_of(case.params["k"])
        ceiling_key = "fp32" if ceilings is not None and ceilings.device == "cpu" else case.precision
        if ceilings is not None and case.flops and ceiling_key in ceilings.matmul_tflops:
            row["pct_of_ceiling"] = ceilings.pct_of_matmul(tflops, ceiling_key)
        rows.append(row)
    return rows


def versus(runs: dict[str, list[bench.Measurement]], baseline: str, other: str) -> bench.Comparison:
    """`other` against `baseline` (speedup = baseline / other), judged against the run-to-run spread."""
    return bench.compare(runs[baseline], runs[other])
