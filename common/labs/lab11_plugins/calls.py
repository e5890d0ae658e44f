"""How lab 11 calls and measures the op: verification against the FP32 reference, the tactic sweep,
the format experiment (an op that takes only FP32 channel-major input, with the conversions it
forces), and the per-call overhead of each way of calling the kernel."""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import torch

from common import bench, checks

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

def measure(configs: Mapping[str, Mapping[str, Any]], *, device: str, label: Callable[[str], str] = str,
            passes: int = 2, warmup_ms: float = 50.0, measure_ms: float = 200.0) -> dict[str, list[bench.Measurement]]:
    """Each configuration `passes` times, interleaved; a GPU config without a stream gets a created one."""
    prepared = {}
    for name, config in configs.items():
        config = dict(config)
        if device == "cuda" and config.get("stream") is None:
            config["stream"] = torch.cuda.Stream()
        prepared[name] = {**config, "name": label(name), "backend": label(name)}
    return bench.measure_interleaved(prepared, passes=passes, device=device, warmup_ms=warmup_ms, measure_ms=measure_ms)


def speed_rows(runs: Mapping[str, list[bench.Measurement]], nbytes: int, copy_gbps: float | None) -> list[dict]:
    """Per configuration: latency, run-to-run spread, GB/s = bytes / latency, % of the copy
    bandwidth, and how many times slower than the fastest one."""
    best = min(bench.median_latency_ms(ms) for ms in runs.values())
    rows = []
    for name, ms in runs.items():
        latency_ms = bench.median_latency_ms(ms)
        gbps = nbytes / (latency_ms / 1e3) / 1e9
        rows.append({"config": name, "latency_ms": latency_ms, "spread_pct": bench.spread_pct(m.latency_ms.median for m in ms),
                     "gb_per_s": gbps, "pct_of_copy": 100 * gbps / copy_gbps if copy_gbps else float("nan"),
                     "x_slower_than_best": latency_ms / best})
    return rows


def best_and_worst(runs: Mapping[str, list[bench.Measurement]]) -> tuple[str, str]:
    ordered = sorted(runs, key=lambda name: bench.median_latency_ms(runs[name]))
    return ordered[0], ordered[-1]


def overhead_rows(runs: Mapping[str, list[bench.Measurement]]) -> list[dict]:
    """Per call path: host time per call (the Python and launch work), device-side latency, spread."""
    return [{"call path": name, "host_us_per_call": 1e3 * bench.median_host_ms(ms), "latency_us": 1e3 * bench.median_latency_ms(ms),
             "host_spread_pct": bench.spread_pct(m.host_ms.median for m in ms)} for name, ms in runs.items()]


def host_comparison(runs: Mapping[str, list[bench.Measurement]], a: str, b: str) -> bench.Comparison:
    """`b` against `a` on host time per call (not device time), judged against the spread."""
    def host_view(ms: list[bench.Measurement]) -> list[bench.Measurement]:
        return [bench.Measurement(**{**m.__dict__, "latency_ms": m.host_ms}) for m in ms]

    return bench.compare(host_view(list(runs[a])), host_view(list(runs[b])))
