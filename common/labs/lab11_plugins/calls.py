"""How lab 11 calls and measures the op: verification against the FP32 reference, the tactic sweep,
the format experiment (an op that takes only FP32 channel-major input, with the conversions it
forces, and the bytes each variant moves), and the per-call cost of each way of calling the kernel:
host time per call beside the kernel's own time and the regime they make."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping

import torch

from common import bench, ceilings, checks

from .kernels import (CPU_CHUNKS, DEFAULT_TACTIC, TACTICS, bias_gelu_op, composed_bias_gelu, cpu_bias_gelu,
                      cpu_chunk_label, jit_style_call, launch, reference)

# -- verification --------------------------------------------------------------------------------


def tolerance(dtype: torch.dtype) -> float:
    """One operation's tolerance for an output of `dtype` against the FP32 reference (common.checks)."""
    return checks.tolerance(checks.precision_of(dtype), "op")


def verify(candidates: Mapping[str, Callable[[], torch.Tensor]], x: torch.Tensor, bias: torch.Tensor) -> list[dict]:
    """Each candidate's output against the FP32 composed op: relative error, the tolerance of its
    output dtype, and whether it is within it."""
    expected = reference(x, bias)
    rows = []
    for name, fn in candidates.items():
        out = fn()
        if out.is_cuda:
            torch.cuda.synchronize()    # a candidate may have written `out` on a stream of its own
        error = checks.relative_error(out.float(), expected)
        rows.append({"implementation": name, "dtype": str(out.dtype).removeprefix("torch."), "rel_error": error,
                     "tolerance": tolerance(out.dtype), "ok": error <= tolerance(out.dtype)})
    return rows

def _writes(fn: Callable[[], Any], out: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        fn()
        return out
    return run


def tactic_candidates(x: torch.Tensor, bias: torch.Tensor, y: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """Each tactic as a no-argument call that writes `y` and returns it (GPU); the CPU's chunk sizes on CPU."""
    if x.is_cuda:
        return {t.label: _writes(functools.partial(launch, x, bias, y, t), y) for t in TACTICS}
    return {cpu_chunk_label(chunk): _writes(functools.partial(cpu_bias_gelu, x, bias, y, chunk), y)
            for chunk in CPU_CHUNKS}


DECLARES_LAYOUT = "declares the conv's layout (channels-last)"
FP32_LINEAR_ONLY = "FP32 channel-major only: converted in and out"


def format_candidates(x_cl: torch.Tensor, bias: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """The op on a channels_last activation (as a conv leaves it), two ways, every buffer allocated once:

    - an op that declares that layout (and the activation's precision) runs on it as it is;
    - an op that takes only FP32 channel-major input needs a conversion in (layout, and on a GPU
      FP16 -> FP32) and one out: the two reformat layers TensorRT inserts around such a plugin.
    """
    y_cl = torch.empty_like(x_cl)
    x_linear = torch.empty(x_cl.shape, device=x_cl.device, dtype=torch.float32)
    y_linear = torch.empty_like(x_linear)
    bias32 = bias.float()
    if x_cl.is_cuda:
        def direct() -> None:
            launch(x_cl, bias, y_cl, channels_last=True)

        def op_linear32() -> None:
            launch(x_linear, bias32, y_linear)
    else:
        def direct() -> None:
            cpu_bias_gelu(x_cl, bias, y_cl)

        def op_linear32() -> None:
            cpu_bias_gelu(x_linear, bias32, y_linear)

    def converted() -> None:
        x_linear.copy_(x_cl)        # reformat in: layout (and precision) in one copy
        op_linear32()
        y_cl.copy_(y_linear)        # reformat out

    return {DECLARES_LAYOUT: _writes(direct, y_cl), FP32_LINEAR_ONLY: _writes(converted, y_cl)}


def format_traffic(shape: tuple[int, ...], element_size: int) -> dict[str, int]:
    """Bytes each format variant must read and write at least, for an activation of `element_size`
    bytes per element (2 for FP16, 4 for FP32):

    - declares the layout: read x, write y, read the bias;
    - FP32 channel-major only: the copy in (read x, write its FP32 copy), the FP32 kernel (read it,
      write the FP32 result, read an FP32 bias), the copy out (read that, write y).
    """
    elements, channels = math.prod(shape), shape[1]
    return {DECLARES_LAYOUT: (2 * elements + channels) * element_size,
            FP32_LINEAR_ONLY: 2 * elements * element_size + (4 * elements + channels) * 4}


def format_bounds(runs: Mapping[str, list[bench.Measurement]], traffic: Mapping[str, int],
                  copy_gbps: float | None) -> list[dict]:
    """Per format variant: bytes moved, the lower bound of its time (bytes / the copy ceiling: no copy
    runs faster), the time measured (kernel time where CUPTI measured it, else event time), and how
    close the measurement comes to its bound. The bytes ratio between the variants is the slowdown the
    conversions cost at copy speed; a larger measured ratio is copies running below copy speed."""
    base = traffic[DECLARES_LAYOUT]
    rows = []
    for name, ms in runs.items():
        measured_ms, timed_on = _device_ms(ms)
        bound_ms = traffic[name] / (copy_gbps * 1e9) * 1e3 if copy_gbps else float("nan")
        rows.append({"config": name, "mbytes": traffic[name] / 1e6, "bytes_ratio": traffic[name] / base,
                     "bound_ms": bound_ms, "measured_ms": measured_ms, "timed_on": timed_on,
                     "pct_of_bound_speed": 100 * bound_ms / measured_ms if copy_gbps else float("nan")})
    return rows


# -- per-call overhead ---------------------------------------------------------------------------

COMPOSED = "composed eager ops (add, then GELU)"
RAW_LAUNCH = "raw Triton launch (fixed tactic)"
JIT_CALLBACK = "JIT-plugin-style callback (pointers -> tensors -> launch)"
CUSTOM_OP = "torch.library custom op"
COMPILED_OP = "torch.compile of the custom op"
GRAPH_REPLAY = "CUDA graph replay of the launch (no Python per call)"
CPU_DIRECT = "direct call of the CPU implementation"


def _graph_of(fn: Callable[[], Any]) -> Callable[[], None]:
    """`fn`'s kernels captured once in a CUDA graph; the returned call replays it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()                                 # warm up (compile, allocate) before capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def overhead_candidates(x: torch.Tensor, bias: torch.Tensor, *, with_compile: bool) -> dict[str, dict[str, Any]]:
    """Ways of calling the op on a small input, as configs for :func:`measure` (which gives each its
    own created stream on a GPU; the JIT-style call comes with its stream, whose handle it is given
    as TensorRT hands a plugin its stream). torch.compile compiles on the first call."""
    op = bias_gelu_op()
    y = torch.empty_like(x)
    configs: dict[str, dict[str, Any]] = {COMPOSED: {"fn": functools.partial(composed_bias_gelu, x, bias)}}
    if x.is_cuda:
        configs[RAW_LAUNCH] = {"fn": functools.partial(launch, x, bias, y, DEFAULT_TACTIC)}
        jit_stream = torch.cuda.Stream()
        configs[JIT_CALLBACK] = {"fn": jit_style_call(x, bias, torch.empty_like(x), jit_stream.cuda_stream),
                                 "stream": jit_stream}
    else:
        configs[CPU_DIRECT] = {"fn": functools.partial(cpu_bias_gelu, x, bias, y)}
    configs[CUSTOM_OP] = {"fn": functools.partial(op, x, bias)}
    if with_compile:
        compiled = torch.compile(lambda a, b: op(a, b), dynamic=False)
        configs[COMPILED_OP] = {"fn": functools.partial(compiled, x, bias)}
    if x.is_cuda:
        configs[GRAPH_REPLAY] = {"fn": _graph_of(functools.partial(launch, x, bias, y, DEFAULT_TACTIC))}
    return configs


# -- measuring -----------------------------------------------------------------------------------

#: Per interleaved pass: the warm-up and measuring budgets (bench.PASSES passes).
WARMUP_MS, MEASURE_MS = 10.0, 50.0


def measure(configs: Mapping[str, Mapping[str, Any]], *, device: str, label: Callable[[str], str] = str,
            passes: int = bench.PASSES, warmup_ms: float = WARMUP_MS,
            measure_ms: float = MEASURE_MS) -> dict[str, list[bench.Measurement]]:
    """Each configuration `passes` times, interleaved; a GPU config without a stream gets a created one."""
    prepared = {}
    for name, config in configs.items():
        config = dict(config)
        if device == "cuda" and config.get("stream") is None:
            config["stream"] = torch.cuda.Stream()
        prepared[name] = {**config, "name": label(name), "backend": label(name)}
    return bench.measure_interleaved(prepared, passes=passes, device=device, warmup_ms=warmup_ms, measure_ms=measure_ms)


def _has_kernel_time(runs: list[bench.Measurement]) -> bool:
    return bool(runs) and all(not math.isnan(m.kernel_ms) for m in runs)


def _device_ms(runs: list[bench.Measurement]) -> tuple[float, str]:
    """The configuration's device time: kernel time where measured, else event (CPU: host) time."""
    if _has_kernel_time(runs):
        return bench.median_kernel_ms(runs), "kernel"
    return bench.median_latency_ms(runs), "event"


def device_comparison(runs_a: list[bench.Measurement], runs_b: list[bench.Measurement]) -> bench.Comparison:
    """B against A on kernel time where both carry it (a device effect), else on event time."""
    on = "kernel" if _has_kernel_time(runs_a) and _has_kernel_time(runs_b) else "event"
    return bench.compare(runs_a, runs_b, on=on)


def speed_rows(runs: Mapping[str, list[bench.Measurement]], nbytes: int, copy_gbps: float | None) -> list[dict]:
    """Per configuration: event latency with kernel time, busy share and regime; host time per call;
    GB/s = bytes / device time (kernel time where measured), % of the copy bandwidth, and how many
    times the fastest one's device time."""
    device_ms = {name: _device_ms(ms) for name, ms in runs.items()}
    best = min(ms for ms, _ in device_ms.values())
    rows = []
    for name, ms in runs.items():
        measured_ms, timed_on = device_ms[name]
        gbps = nbytes / (measured_ms / 1e3) / 1e9
        rows.append({"config": name, "latency_ms": bench.median_latency_ms(ms), **bench.kernel_fields(ms),
                     "host_ms": bench.median_host_ms(ms),
                     "spread_pct": bench.spread_pct(m.latency_ms.median for m in ms), "timed_on": timed_on,
                     "gb_per_s": gbps,
                     "pct_of_copy": ceilings.pct_of(gbps, copy_gbps, "copy") if copy_gbps else float("nan"),
                     "x_slower_than_best": measured_ms / best})
    return rows


def best_and_worst(runs: Mapping[str, list[bench.Measurement]]) -> tuple[str, str]:
    """The fastest and slowest configuration by device time (kernel time where measured)."""
    ordered = sorted(runs, key=lambda name: _device_ms(runs[name])[0])
    return ordered[0], ordered[-1]


def host_ratio(runs: Mapping[str, list[bench.Measurement]], base: str, path: str) -> bench.Comparison:
    """`path`'s host time per call as a multiple of `base`'s (its ``speedup`` is host(path) / host(base)),
    with its interval over the passes."""
    return bench.compare(runs[path], runs[base], on="host")


def host_words(ratio: bench.Comparison, path: str, base: str) -> str:
    """A host-time ratio in words: "X: host time per call 2.64x the Y's", or "0.40x the Y's (2.5x less)"."""
    times = ratio.speedup
    lo, hi = ratio.interval
    interval = "" if math.isnan(lo) else f" (95% interval {lo:.2f}-{hi:.2f}x)"
    return f"{path}: host time per call {times_text(times, base)}{interval}"


def times_text(times: float, of: str) -> str:
    """`times` as words against `of`: "2.64x the raw Triton launch's", "0.40x the raw Triton launch's (2.5x less)"."""
    return f"{times:.2f}x the {of}'s" + (f" ({1 / times:.1f}x less)" if times < 1 else "")


def overhead_rows(runs: Mapping[str, list[bench.Measurement]], base: str | None = None) -> list[dict]:
    """Per call path: host time per call (the Python and launch work), the kernel's own time, the event
    time on the stream, the regime they make, and the host time against `base`'s in words."""
    rows = []
    for name, ms in runs.items():
        kernel = bench.kernel_fields(ms)
        host_us = 1e3 * bench.median_host_ms(ms)
        kernel_us = 1e3 * kernel["kernel_ms"]
        row = {"call path": name, "host_us_per_call": host_us, "kernel_us": kernel_us,
               "latency_us": 1e3 * bench.median_latency_ms(ms), "gpu_busy": kernel["gpu_busy"],
               "regime": kernel["regime"], "host_spread_pct": bench.spread_pct(m.host_ms.median for m in ms),
               "host_per_kernel": host_us / kernel_us if kernel_us > 0 else float("nan")}
        if base is not None:
            row["host time"] = "the reference" if name == base else times_text(host_ratio(runs, base, name).speedup,
                                                                            base.split(" (")[0])
        rows.append(row)
    return rows
