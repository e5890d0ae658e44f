"""Lab 06 (reduce and shuffle): which axis a sum runs over, and which reshapes move memory.

A reduction reads its whole input once and writes a much
smaller output, so its speed is a memory-bandwidth figure: achieved GB/s = (bytes read + bytes
written) / time, quoted as a % of the machine's measured copy ceiling (``common.ceilings``), which counts
bytes the same way; a figure is never shown above 100% of it (:func:`pcts_of_copy`).
A shuffle (reshape, transpose, flatten) either changes only the shape and strides of a tensor that
keeps its storage — nothing runs — or lays the data out anew, which costs a full read and write.
This module prepares both kinds of experiment for PyTorch, ONNX Runtime and TensorRT (the shuffle
graphs' layers, and a reduce study: :func:`tensorrt_reduce_study`, layers from the inspector and time
from the per-layer profile and from kernel time), checks the reductions against FP64 before they
are timed (:func:`verify_reductions`), and turns the results into the lab's claims (:func:`claims`
of a :class:`ReduceShuffleResults`). Device effects are judged on kernel time where CUPTI measures it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import onnx
import onnx_graphsurgeon as gs
import torch
from onnx import TensorProto, helper

from .. import bench, checks, plots, report
from .. import onnx as onnx_tools

OPSET = 17


# -- reductions ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReduceCase:
    """Sum a tensor of `shape` over axis `dim`, in place or after moving that axis last
    (``transpose_first``: ``movedim(dim, -1)`` copied into a contiguous buffer, then a last-axis sum)."""

    label: str          # what the shape is, e.g. "NCHW"
    shape: tuple[int, ...]
    dim: int
    transpose_first: bool = False

    @property
    def axis_length(self) -> int:
        return self.shape[self.dim]

    @property
    def is_last_axis(self) -> bool:
        return self.dim == len(self.shape) - 1

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(n for i, n in enumerate(self.shape) if i != self.dim)

    @property
    def name(self) -> str:
        how = ", transposed to last first" if self.transpose_first else ""
        return f"{self.label} {'x'.join(map(str, self.shape))} sum axis {self.dim} (length {self.axis_length}){how}"

    @property
    def short_name(self) -> str:
        return f"{self.label} axis {self.dim} ({self.axis_length}){' via transpose' if self.transpose_first else ''}"

    def useful_bytes(self, itemsize: int) -> int:
        """Bytes a reduction must move: read the input once, write the output once."""
        return (int(np.prod(self.shape)) + int(np.prod(self.output_shape))) * itemsize

    def moved_bytes(self, itemsize: int) -> int:
        """Bytes this variant does move: a transpose first adds a full read and write of the input."""
        extra = 2 * int(np.prod(self.shape)) * itemsize if self.transpose_first else 0
        return self.useful_bytes(itemsize) + extra


def reduce_cases(nchw: Sequence[int], matrix: Sequence[int]) -> list[ReduceCase]:
    """The lab's cases: an NCHW activation over W (short, last), H and C; the same data as (N, C, H*W)
    with a long last axis; a matrix over its last and first axes; and two in-place sums repeated
    with an explicit transpose first (C of the NCHW tensor, rows of the matrix)."""
    n, c, h, w = nchw
    nchw, long_last, matrix = tuple(nchw), (n, c, h * w), tuple(matrix)
    return [
        ReduceCase("NCHW", nchw, 3), ReduceCase("NCHW", nchw, 2), ReduceCase("NCHW", nchw, 1),
        ReduceCase("NCHW", nchw, 1, transpose_first=True),
        ReduceCase("N,C,HW", long_last, 2), ReduceCase("N,C,HW", long_last, 1),
        ReduceCase("matrix", matrix, 1), ReduceCase("matrix", matrix, 0),
        ReduceCase("matrix", matrix, 0, transpose_first=True),
    ]


def make_input(shape: Sequence[int], *, device: str, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Seeded standard-normal data, generated on `device`."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)


class TorchReduce:
    """One case prepared in PyTorch: its input, its output and (transposed variant) its contiguous
    buffer allocated once, so a call enqueues only the copy and the sum kernels."""

    def __init__(self, case: ReduceCase, x: torch.Tensor):
        if tuple(x.shape) != case.shape:
            raise ValueError(f"input shape {tuple(x.shape)} is not the case's {case.shape}")
        self.case, self.x = case, x
        self.out = torch.empty(case.output_shape, dtype=x.dtype, device=x.device)
        self.buffer = torch.empty_like(x.movedim(case.dim, -1), memory_format=torch.contiguous_format) \
            if case.transpose_first else None

    def __call__(self) -> torch.Tensor:
        if self.buffer is not None:
            self.buffer.copy_(self.x.movedim(self.case.dim, -1))
            return torch.sum(self.buffer, dim=-1, out=self.out)
        return torch.sum(self.x, dim=self.case.dim, out=self.out)

    def reference_error(self) -> float:
        """Relative error of this reduction against the FP64 sum of the same input."""
        out = self()
        return onnx_tools.max_relative_error(out, self.x.double().sum(dim=self.case.dim))


def reduce_sum_model(case: ReduceCase, *, keepdims: bool = False, dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """The case as an ONNX graph built with onnx.helper: ReduceSum over `dim`, after a Transpose that
    moves `dim` last for the transposed variant. `keepdims` keeps the reduced axis (length 1), as
    TensorRT's Shuffle-and-Reduce fusion needs; `dtype` is the ONNX element type (FP32 by default)."""
    rank = len(case.shape)
    nodes, inputs_of_sum, axis = [], "x", case.dim
    if case.transpose_first:
        perm = [i for i in range(rank) if i != case.dim] + [case.dim]
        nodes.append(helper.make_node("Transpose", ["x"], ["x_t"], perm=perm))
        inputs_of_sum, axis = "x_t", rank - 1
    nodes.append(helper.make_node("ReduceSum", [inputs_of_sum, "axes"], ["y"], keepdims=int(keepdims)))
    summed_shape = list(case.shape)
    if case.transpose_first:
        summed_shape.append(summed_shape.pop(case.dim))
    out_shape = [1 if i == axis else n for i, n in enumerate(summed_shape)] if keepdims else list(case.output_shape)
    graph = helper.make_graph(
        nodes, "reduce_sum", [helper.make_tensor_value_info("x", dtype, case.shape)],
        [helper.make_tensor_value_info("y", dtype, out_shape)],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [axis])])
    model = onnx_tools.portable(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]))
    onnx.checker.check_model(model)
    return model


def reduce_graph_path(case: ReduceCase, directory: str | Path, suffix: str = "") -> Path:
    """Where a case's ReduceSum graph is written: one file per shape, axis and variant."""
    return Path(directory) / (f"reduce_{'x'.join(map(str, case.shape))}_axis{case.dim}"
                              f"{'_transposed' if case.transpose_first else ''}{suffix}.onnx")


class OrtReduce:
    """One case in ONNX Runtime on the CPU: the graph of :func:`reduce_sum_model` saved to `directory`."""

    def __init__(self, case: ReduceCase, x: np.ndarray, directory: str | Path):
        path = reduce_graph_path(case, directory)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(reduce_sum_model(case), str(path))
        self.case, self.x, self.path = case, np.ascontiguousarray(x, dtype=np.float32), path
        self.session = onnx_tools.ort_session(path)

    def __call__(self) -> np.ndarray:
        return self.session.run(None, {"x": self.x})[0]

    def reference_error(self) -> float:
        return onnx_tools.max_relative_error(self(), self.x.astype(np.float64).sum(axis=self.case.dim))


def verify_reductions(errors: dict[str, float], dtype: torch.dtype) -> bool:
    """Every reduction's error against the FP64 sum within the course's tolerance for one operation
    in `dtype`'s precision (:data:`common.checks.TOLERANCE`); raises naming the first that is not."""
    return checks.verify_errors(errors, precision=checks.precision_of(dtype), scope="op")


def pcts_of_copy(ceiling: Any, gbps: Sequence[float]) -> list[tuple[float, str]]:
    """Each rate as a % of the measured copy ceiling, never above 100, with a note where it needed one.

    The fastest is offered to the ceiling first: up to :data:`common.ceilings.LIFT_LIMIT` above, it
    is the best copy-like rate seen here and raises the ceiling (so every figure is read against the
    same, raised, ceiling: ``ceiling.lifted`` records it); further above, the figure does not count
    what a copy counts (a sum reads far more than it writes; on a CPU a copy's write also reads the
    line it lands in), and it gets no % but a note saying so.
    """
    return ceiling.pcts_of(gbps, "copy", "above the copy ceiling ({ceiling:.0f} GB/s): a sum reads, a copy reads "
                                         "and writes; no % of it is shown")


def timed_on(runs: Sequence[bench.Measurement]) -> str:
    """"kernel" where every run carries CUPTI's kernel time (a GPU), else "event" (a CPU: the host's clock)."""
    return "kernel" if runs and all(m.kernel is not None for m in runs) else "event"


def device_ms(runs: Sequence[bench.Measurement]) -> float:
    """The time a device effect is judged on: kernel time where measured, else the event (host) time."""
    return bench.median_kernel_ms(runs) if timed_on(runs) == "kernel" else bench.median_latency_ms(runs)


def measure_reductions(reductions: Sequence[TorchReduce | OrtReduce], *, backend: str, device: str,
                       ceiling: Any, passes: int = bench.PASSES, **bench_kwargs) -> tuple[list[dict], dict]:
    """Time every reduction `passes` times (passes interleaved) with the course harness.

    Returns one row per case — event time, kernel time (GPU), busy share and regime, GB/s from the bytes
    a reduction must move over the kernel time (the event time on a CPU), that as a % of the measured
    copy ceiling (:func:`pcts_of_copy`) — and the measurements by case name.
    """
    runs = bench.measure_interleaved({r.case.name: {"fn": r, "name": r.case.name} for r in reductions},
                                     passes=passes, backend=backend, device=device, **bench_kwargs)
    rows = []
    for r in reductions:
        itemsize = r.x.element_size() if isinstance(r.x, torch.Tensor) else r.x.itemsize
        ms = runs[r.case.name]
        rows.append({"backend": backend, "case": r.case.short_name, "name": r.case.name,
                     "shape": "x".join(map(str, r.case.shape)), "axis": r.case.dim, "axis_length": r.case.axis_length,
                     "last_axis": r.case.is_last_axis, "transposed_first": r.case.transpose_first,
                     "median_ms": bench.median_latency_ms(ms), "timed_on": timed_on(ms),
                     "spread_pct": bench.spread_pct(bench.COMPARED_ON[timed_on(ms)](m) for m in ms),
                     "useful_bytes": r.case.useful_bytes(itemsize), "MB_moved": r.case.moved_bytes(itemsize) / 1e6,
                     "GB_per_s": r.case.useful_bytes(itemsize) / (device_ms(ms) / 1e3) / 1e9, **bench.kernel_fields(ms)})
    for row, (pct, note) in zip(rows, pcts_of_copy(ceiling, [row["GB_per_s"] for row in rows])):
        row.update(pct_of_copy=pct, note=note)
    return rows, runs


@dataclass(frozen=True)
class RateComparison:
    """Two cases' bandwidths: ratio = b's GB/s / a's, with its 95% interval over passes, judged on `on` time."""

    a: str
    b: str
    ratio: float
    interval: tuple[float, float]
    on: str

    @property
    def significant(self) -> bool:
        lo, hi = self.interval
        return not lo <= 1.0 <= hi

    def verdict(self) -> str:
        lo, hi = self.interval
        tail = "" if self.significant else ": the interval holds 1.00x, noise"
        return f"{self.b} vs {self.a}: {self.ratio:.2f}x the GB/s (95% interval {lo:.2f}-{hi:.2f}x, {self.on} time){tail}"


def rate_comparison(runs_a: Sequence[bench.Measurement], runs_b: Sequence[bench.Measurement], bytes_a: int,
                    bytes_b: int, a: str = "a", b: str = "b") -> RateComparison:
    """B's rate over A's: (bytes_b / t_b) / (bytes_a / t_a), the time ratio of :func:`common.bench.compare`
    (kernel time where measured) scaled by the bytes, interval included. Bandwidth, not time, because two
    sums over different axes write outputs of different sizes."""
    on = timed_on([*runs_a, *runs_b])
    comparison = bench.compare(runs_a, runs_b, on=on)
    scale = bytes_b / bytes_a
    lo, hi = comparison.interval
    return RateComparison(a, b, comparison.speedup * scale, (lo * scale, hi * scale), on)


def compare_rates(rows: Sequence[dict], runs: dict, a: str, b: str, backend: str) -> RateComparison:
    """Compare the GB/s of cases `a` and `b` (short names) of one backend (:func:`rate_comparison`)."""
    row = {r["case"]: r for r in rows if r["backend"] == backend}
    for case in (a, b):
        if case not in row:
            raise KeyError(f"no row for case {case!r} of backend {backend!r}; cases: {sorted(row)}")
    return rate_comparison(runs[row[a]["name"]], runs[row[b]["name"]], row[a]["useful_bytes"], row[b]["useful_bytes"],
                           a, b)


def axis_case_names(nchw: Sequence[int]) -> tuple[str, str, str, str]:
    """The short names of the NCHW sums over W (the short last axis), H and C, and of the same data's
    sum over its long last axis (N, C, H*W)."""
    short_last, middle_h, middle_c = (ReduceCase("NCHW", tuple(nchw), d).short_name for d in (3, 2, 1))
    return short_last, middle_h, middle_c, ReduceCase("N,C,HW", (nchw[0], nchw[1], nchw[2] * nchw[3]), 2).short_name


def axis_comparisons(rows: Sequence[dict], runs: dict, nchw: Sequence[int], backend: str) -> dict[str, RateComparison]:
    """The NCHW sums over H, over C, and over the long last axis (N, C, H*W), each against the short
    last axis W, by GB/s (:func:`compare_rates`)."""
    short_last, middle_h, middle_c, long_last = axis_case_names(nchw)
    return {"H vs short last W": compare_rates(rows, runs, short_last, middle_h, backend),
            "C vs short last W": compare_rates(rows, runs, short_last, middle_c, backend),
            "long last vs short last": compare_rates(rows, runs, short_last, long_last, backend)}


def copy_time_ms(nbytes: int, copy_gbps: float) -> float:
    """How long copying `nbytes` (read `nbytes`, write `nbytes`) takes at the measured copy ceiling."""
    return 2 * nbytes / (copy_gbps * 1e9) * 1e3


# -- shuffles in PyTorch ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShuffleCase:
    """A shape change written the way models write it; `make` takes the NCHW input."""

    name: str
    make: Callable[[torch.Tensor], torch.Tensor]


def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def shuffle_cases(groups: int = 4) -> list[ShuffleCase]:
    """Reshapes that only relabel the same memory, then ones that must lay the data out anew."""
    return [
        ShuffleCase("reshape (N,C,H,W) -> (N,C,H*W)", lambda x: x.reshape(x.shape[0], x.shape[1], -1)),
        ShuffleCase("flatten(start_dim=1)", lambda x: torch.flatten(x, 1)),
        ShuffleCase("transpose of a size-1 dim, .contiguous()",
                    lambda x: x.reshape(x.shape[0], 1, x.shape[1], -1).transpose(1, 2).contiguous()),
        ShuffleCase("permute to NHWC (a strided view)", lambda x: x.permute(0, 2, 3, 1)),
        ShuffleCase("permute to NHWC, .contiguous()", lambda x: x.permute(0, 2, 3, 1).contiguous()),
        ShuffleCase("transpose(2, 3), reshape (N,C,W*H)", lambda x: x.transpose(2, 3).reshape(x.shape[0], x.shape[1], -1)),
        ShuffleCase(f"channel shuffle, {groups} groups", lambda x: _channel_shuffle(x, groups)),
    ]


def shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when `b` lives in `a`'s memory: the shuffle that made it moved no data."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def storage_facts(x: torch.Tensor, cases: Sequence[ShuffleCase]) -> list[dict]:
    """For each shuffle of `x`: does the result share x's storage (no copy ran), is it a view
    (``_base`` set), is it contiguous. None of this depends on the sizes or the device."""
    rows = []
    for case in cases:
        y = case.make(x)
        rows.append({"shuffle": case.name, "shares_storage": shares_storage(x, y),
                     "is_view": y._base is not None, "contiguous": y.is_contiguous()})
    return rows


def cuda_kernels_launched(fn: Callable[[], object]) -> int:
    """How many GPU activities (kernels, memcpys, memsets) one call of `fn` puts on the device, by
    CUPTI. `fn` runs once before, so lazy initialisation is not counted."""
    return len(bench.device_records_of_call(fn))


def measure_shuffles(x: torch.Tensor, cases: Sequence[ShuffleCase], *, backend: str, device: str,
                     ceiling: Any, passes: int = bench.PASSES, **bench_kwargs) -> list[dict]:
    """Time each shuffle as written (allocation included, from PyTorch's caching allocator on a GPU),
    `passes` interleaved passes. Per shuffle: event time, kernels per iteration and kernel time (GPU),
    its time as a multiple of one copy of x at the copy ceiling (``x_one_copy``), and for a shuffle that
    copies, its bandwidth — bytes read + written (2 x the tensor) over its kernel time (event time on a
    CPU), the count the copy ceiling uses — as a % of that ceiling (:func:`pcts_of_copy`)."""
    configs = {c.name: {"fn": lambda case=c: case.make(x), "name": c.name} for c in cases}
    runs = bench.measure_interleaved(configs, passes=passes, backend=backend, device=device, **bench_kwargs)
    nbytes = x.numel() * x.element_size()
    rows = []
    for case in cases:
        ms = runs[case.name]
        shares = shares_storage(x, case.make(x))
        kernels = [m.kernel.activities_per_iter for m in ms if m.kernel is not None]
        row = {"backend": backend, "shuffle": case.name, "shares_storage": shares,
               "median_ms": bench.median_latency_ms(ms), "timed_on": timed_on(ms),
               "spread_pct": bench.spread_pct(m.latency_ms.median for m in ms),
               "kernels_per_iter": statistics.median(kernels) if kernels else float("nan"),
               "x_one_copy": device_ms(ms) / copy_time_ms(nbytes, ceiling.copy_gbps),
               "GB_per_s": float("nan") if shares else 2 * nbytes / (device_ms(ms) / 1e3) / 1e9,
               **bench.kernel_fields(ms)}
        if ms and all(m.device == "cuda" and m.kernel is None and m.kernel_note == bench.NO_DEVICE_WORK for m in ms):
            # a view: CUPTI works here and saw no kernel, so the GPU did nothing; the events timed the host's call
            row.update(timed_on="kernel", kernels_per_iter=0, kernel_ms=0.0, x_one_copy=0.0, gpu_busy=0.0,
                       regime=bench.HOST_BOUND)
        rows.append(row)
    for row, (pct, note) in zip(rows, pcts_of_copy(ceiling, [row["GB_per_s"] for row in rows])):
        row.update(pct_of_copy=pct, note=note)
    return rows


def heads_matmul_operands(batch: int, seq: int, heads: int, head_dim: int, *, device: str,
                          dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention-style operands: q as (B, S, H, D), the same data as contiguous (B, H, S, D), and k as
    (B, H, D, S). ``q.permute(0, 2, 1, 3) @ k`` needs the (B, H) batch folded into one, which the
    permuted strides cannot give without a copy."""
    q = make_input((batch, seq, heads, head_dim), device=device, dtype=dtype, seed=1)
    k = make_input((batch, heads, head_dim, seq), device=device, dtype=dtype, seed=2)
    return q, q.permute(0, 2, 1, 3).contiguous(), k


# -- shuffles as ONNX graphs (ONNX Runtime, TensorRT) ------------------------------------------------

SHUFFLE_GRAPHS = ("pure reshape", "size-1 transpose", "channel shuffle")


def shuffle_graph(kind: str, shape: Sequence[int], groups: int = 4) -> onnx.ModelProto:
    """Relu -> shape change -> Relu, built with onnx-graphsurgeon, FP32, static shape (N, C, H, W):

    - "pure reshape": Reshape to (N, C, H*W), same memory order;
    - "size-1 transpose": Reshape to (N, 1, C, H*W), Transpose(0, 2, 1, 3), Reshape back: moves a
      size-1 dim only, so the memory order is unchanged;
    - "channel shuffle": Reshape to (N, g, C/g, H, W), Transpose(0, 2, 1, 3, 4), Reshape back: the
      ShuffleNet channel shuffle, which reorders memory.
    The Relus give the shape change compute layers on both sides to fuse with or not.
    """
    n, c, h, w = shape
    if c % groups:
        raise ValueError(f"{c} channels do not split into {groups} groups")
    x = gs.Variable("x", dtype=np.float32, shape=(n, c, h, w))
    a = gs.Variable("relu_in", dtype=np.float32)
    nodes = [gs.Node("Relu", inputs=[x], outputs=[a])]

    def reshape(tensor: gs.Variable, target: Sequence[int], name: str) -> gs.Variable:
        out = gs.Variable(f"{name}_out", dtype=np.float32)
        nodes.append(gs.Node("Reshape", name=name, inputs=[tensor, gs.Constant(f"{name}_shape", np.array(target, np.int64))],
                             outputs=[out]))
        return out

    def transpose(tensor: gs.Variable, perm: Sequence[int]) -> gs.Variable:
        out = gs.Variable("transpose_out", dtype=np.float32)
        nodes.append(gs.Node("Transpose", name="transpose", inputs=[tensor], outputs=[out], attrs={"perm": list(perm)}))
        return out

    if kind == "pure reshape":
        shuffled, out_shape = reshape(a, (n, c, h * w), "reshape"), (n, c, h * w)
    elif kind == "size-1 transpose":
        t = transpose(reshape(a, (n, 1, c, h * w), "reshape_in"), (0, 2, 1, 3))
        shuffled, out_shape = reshape(t, (n, c, h, w), "reshape_out"), (n, c, h, w)
    elif kind == "channel shuffle":
        t = transpose(reshape(a, (n, groups, c // groups, h, w), "reshape_in"), (0, 2, 1, 3, 4))
        shuffled, out_shape = reshape(t, (n, c, h, w), "reshape_out"), (n, c, h, w)
    else:
        raise ValueError(f"kind must be one of {SHUFFLE_GRAPHS}, got {kind!r}")
    y = gs.Variable("y", dtype=np.float32, shape=out_shape)
    nodes.append(gs.Node("Relu", inputs=[shuffled], outputs=[y]))
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[y], opset=OPSET)
    model = onnx_tools.portable(gs.export_onnx(graph.cleanup().toposort()))
    onnx.checker.check_model(model)
    return model


def shuffle_reference(kind: str, x: np.ndarray, groups: int = 4) -> np.ndarray:
    """What the graph of `kind` computes, in NumPy."""
    n, c, h, w = x.shape
    r = np.maximum(x, 0)
    if kind == "pure reshape":
        return r.reshape(n, c, h * w)
    if kind == "size-1 transpose":
        return r.reshape(n, 1, c, h * w).transpose(0, 2, 1, 3).reshape(n, c, h, w)
    if kind == "channel shuffle":
        return r.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
    raise ValueError(f"kind must be one of {SHUFFLE_GRAPHS}, got {kind!r}")


def save_shuffle_graphs(shape: Sequence[int], directory: str | Path, groups: int = 4) -> dict[str, Path]:
    """Each graph of :data:`SHUFFLE_GRAPHS` written to `directory`, by kind."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind in SHUFFLE_GRAPHS:
        path = directory / f"{kind.replace(' ', '_').replace('-', '')}_{'x'.join(map(str, shape))}.onnx"
        onnx.save(shuffle_graph(kind, shape, groups), str(path))
        paths[kind] = path
    return paths


def tensorrt_shuffle_layers(paths: dict[str, Path]) -> list[dict]:
    """TensorRT: build each shuffle graph (detailed profiling verbosity) and read the engine inspector:
    how many layers run, how many are Shuffle layers, reformats, Myelin regions, and their names."""
    from ..trt import BuildConfig, build_engine, inspect_engine

    rows = []
    for kind, path in paths.items():
        info = inspect_engine(build_engine(path, BuildConfig(profiling_verbosity="detailed")).engine)
        rows.append({"graph": kind, "layers": len(info.layers),
                     "shuffle_layers": sum(1 for layer in info.layers if layer.layer_type == "Shuffle"),
                     "reformat_layers": len(info.reformat_layers()), "myelin_layers": len(info.myelin_layers()),
                     "layer_types": info.count_by_type(), "layer_names": [layer.name for layer in info.layers]})
    return rows


# -- the reductions in TensorRT ------------------------------------------------------------------------

def trt_reduce_cases(nchw: Sequence[int]) -> list[ReduceCase]:
    """The TensorRT reduce study: the NCHW activation summed over its short last axis W and over C
    (axis 1), C again after a Transpose that moves it last, and the same data as (N, C, H*W) summed
    over its long last axis."""
    n, c, h, w = nchw
    return [ReduceCase("NCHW", tuple(nchw), 3), ReduceCase("NCHW", tuple(nchw), 1),
            ReduceCase("NCHW", tuple(nchw), 1, transpose_first=True), ReduceCase("N,C,HW", (n, c, h * w), 2)]


def save_trt_reduce_graphs(cases: Sequence[ReduceCase], directory: str | Path) -> dict[str, Path]:
    """Each case as an FP16 ReduceSum graph that keeps the reduced axis (what TensorRT's Shuffle-and-Reduce
    fusion needs to fold a Transpose into the Reduce), by short name."""
    paths = {}
    for case in cases:
        path = reduce_graph_path(case, directory, "_fp16_keepdims")
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(reduce_sum_model(case, keepdims=True, dtype=TensorProto.FLOAT16), str(path))
        paths[case.short_name] = path
    return paths


def trt_reduce_comparisons(rows: Sequence[dict], runs: dict, nchw: Sequence[int]) -> dict[str, RateComparison]:
    """The TensorRT reduce study's two comparisons, by GB/s on kernel time: the long last axis (a tail
    reduce) against C (axis 1), and transpose-then-reduce over C against the reduce over C in place."""
    short_over_c, via_transpose, long_last = (c.short_name for c in trt_reduce_cases(nchw)[1:])
    by = {row["case"]: row for row in rows}

    def versus(a: str, b: str) -> RateComparison:
        return rate_comparison(runs[a], runs[b], by[a]["useful_bytes"], by[b]["useful_bytes"], a, b)

    return {"long last vs C": versus(short_over_c, long_last), "C via transpose vs C": versus(short_over_c, via_transpose)}


#: What trtexec adds to show what the studies read: the engine's layers and the per-layer profile.
TRTEXEC_EXTRA = ("--dumpLayerInfo", "--dumpProfile")


def trtexec_commands(paths: dict[str, Path]) -> list[str]:
    """The trtexec command of each engine built from `paths` (file names only; static shapes)."""
    from ..trt import BuildConfig, trtexec_command

    return [trtexec_command(Path(path).name, BuildConfig(profiling_verbosity="detailed"), extra=TRTEXEC_EXTRA)
            for path in paths.values()]


def tensorrt_reduce_study(cases: Sequence[ReduceCase], paths: dict[str, Path], x: dict[tuple[int, ...], torch.Tensor],
                          *, passes: int = bench.PASSES) -> tuple[list[dict], dict[str, list[bench.Measurement]]]:
    """TensorRT: build each case's FP16 graph, check its sum against PyTorch's FP64 one, read the engine
    inspector (layers, their types) and the per-layer profile (the Reduce's time, GB/s from it), then
    time all engines in `passes` interleaved passes (event and kernel time). `x` holds the FP16 inputs
    by shape (on the GPU)."""
    from ..trt import BuildConfig, EngineRunner, build_engine, inspect_engine
    from ..trt.profile import profile_layers

    rows, runners = [], {}
    for case in cases:
        build = build_engine(paths[case.short_name], BuildConfig(profiling_verbosity="detailed"))
        runner = EngineRunner(build.engine)
        runners[case.short_name] = runner
        inp = x[case.shape]
        out = runner.run({"x": inp})["y"]
        expected = inp.double().movedim(case.dim, -1).sum(-1) if case.transpose_first else inp.double().sum(case.dim)
        error = checks.verify(out.reshape(expected.shape), expected, f"TensorRT {case.short_name}",
                              precision="fp16", scope="op")
        info = inspect_engine(build.engine, runner.context(0))
        times = profile_layers(runner)
        rows.append({"case": case.short_name, "name": case.name, "useful_bytes": case.useful_bytes(2),
                     "layers": len(info.layers), "layer_types": info.count_by_type(), "rel_error": error,
                     "profiled_ms": times.median_run_ms(), "layer_names": [layer.name for layer in info.layers],
                     "GB_per_s_profile": case.useful_bytes(2) / (times.median_run_ms() / 1e3) / 1e9})
    runs = bench.measure_interleaved(
        {name: {"fn": runner.enqueue, "name": f"TensorRT {name}", "stream": runner.stream(0)} for name, runner in runners.items()},
        passes=passes, device="cuda", backend="TensorRT", warmup_ms=10, measure_ms=40)
    for row in rows:
        ms = runs[row["case"]]
        row.update(median_ms=bench.median_latency_ms(ms), GB_per_s=row["useful_bytes"] / (device_ms(ms) / 1e3) / 1e9,
                   **bench.kernel_fields(ms))
    for runner in runners.values():
        runner.close()
    return rows, runs


# -- the claims ---------------------------------------------------------------------------------------

@dataclass
class ReduceShuffleResults:
    """What the lab measured, for :func:`claims`."""

    backend: str                    # the PyTorch backend the reductions and shuffles ran on
    nchw: tuple[int, ...]           # the NCHW activation's shape
    reduce_rows: list[dict]         # :func:`measure_reductions` (rows of other backends are ignored)
    axis_comparisons: dict[str, RateComparison]   # :func:`axis_comparisons` of the PyTorch backend
    transpose_results: list[tuple[ReduceCase, bench.Comparison]]   # each transposed variant vs in place
    facts: list[dict]               # :func:`storage_facts` of :func:`shuffle_cases`
    shuffle_rows: list[dict]        # :func:`measure_shuffles`
    matmul_comparison: bench.Comparison   # the permuted operand against the contiguous one
    trt_rows: list[dict]            # :func:`tensorrt_shuffle_layers`; empty without TensorRT
    trt_reduce_rows: list[dict]     # :func:`tensorrt_reduce_study`; empty without TensorRT
    trt_reduce_comparisons: dict[str, RateComparison]   # "long last vs C", "C via transpose vs C"; empty without


TRT_CLAIMS = ["TensorRT runs the pure reshape without a Shuffle layer of its own",
              "TensorRT runs the channel shuffle's Reshape->Transpose->Reshape as at most one Shuffle layer",
              "TensorRT: a tail reduce (the long last axis H*W) streams at a higher rate than a reduce over C "
              "(kernel time)",
              "TensorRT folds the Transpose into the Reduce: transpose-then-reduce over C runs as many layers "
              "as the reduce over C in place"]
REAL_TRANSPOSE = "permute to NHWC, .contiguous()"


def _gbps(value: float) -> str:
    """A rate for a claim's why: whole GB/s on a GPU, three digits for a CPU's few GB/s."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _tensorrt_claims(r: ReduceShuffleResults, lab_report: report.LabReport) -> None:
    trt = {x["graph"]: x for x in r.trt_rows}
    pure, shuffle = trt["pure reshape"], trt["channel shuffle"]
    lab_report.check(TRT_CLAIMS[0], pure["shuffle_layers"], pure["shuffle_layers"] == 0,
                     fmt="{:.0f} Shuffle layers", why=str(pure["layer_names"]))
    lab_report.check(TRT_CLAIMS[1], shuffle["shuffle_layers"], shuffle["shuffle_layers"] <= 1,
                     fmt="{:.0f} Shuffle layers", why=str(shuffle["layer_names"]))
    rows = {x["case"]: x for x in r.trt_reduce_rows}
    tail = r.trt_reduce_comparisons["long last vs C"]
    lab_report.check_ratio(TRT_CLAIMS[2], tail.ratio, tail.interval, threshold=1.0, fmt="{:.2f}x",
                           why=f"GB/s ratio, {tail.b} vs {tail.a}; per-layer profile "
                               f"{rows[tail.b]['GB_per_s_profile']:.0f} vs {rows[tail.a]['GB_per_s_profile']:.0f} GB/s")
    transposed = r.trt_reduce_comparisons["C via transpose vs C"]
    layers = (rows[transposed.b]["layers"], rows[transposed.a]["layers"])
    lab_report.check(TRT_CLAIMS[3], layers[0], layers[0] <= layers[1], fmt="{:.0f} layers",
                     why=f"in place: {layers[1]} layers; {transposed.verdict()}"
                         + ("" if layers[0] <= layers[1] else f"; layers {rows[transposed.b]['layer_names']}"))


def claims(results: ReduceShuffleResults, *, has_tensorrt: bool,
           lab_report: report.LabReport | None = None) -> report.LabReport:
    """The lab's claims on the reductions' axes, the transposes before them, the shuffles, TensorRT.

    Device effects (which axis, the transpose before a sum, the copy feeding a matmul) are judged on
    kernel time on a GPU (the host's clock on a CPU) with their 95% interval over passes."""
    r, lab_report = results, lab_report or report.LabReport("06_reduce_shuffle")
    backend, nchw = r.backend, r.nchw
    short_last, middle_h, middle_c, long_last = axis_case_names(nchw)
    long_shape = (nchw[0], nchw[1], nchw[2] * nchw[3])
    comparisons = r.axis_comparisons
    row = {x["case"]: x for x in r.reduce_rows if x["backend"] == backend}
    for what, case in (("H (axis 2)", middle_h), ("C (axis 1)", middle_c)):
        comparison = comparisons[f"{what[0]} vs short last W"]
        lab_report.check_ratio(f"{backend}: summing the short last axis W={nchw[3]} streams at a lower rate than "
                               f"summing {what}", comparison.ratio, comparison.interval, threshold=1.0,
                               fmt="{:.2f}x", why=f"GB/s ratio; {what}: {_gbps(row[case]['GB_per_s'])} GB/s, W: "
                                                  f"{_gbps(row[short_last]['GB_per_s'])} GB/s ({comparison.on} time)")
    long_vs_short = comparisons["long last vs short last"]
    lab_report.check_ratio(f"{backend}: a long last axis ({long_shape[2]}) sums faster than the short one ({nchw[3]})",
                           long_vs_short.ratio, long_vs_short.interval, threshold=1.0, fmt="{:.2f}x",
                           why=f"GB/s ratio, {long_vs_short.on} time")
    pct = row[long_last]["pct_of_copy"]
    long_claim = f"{backend}: summing a long last axis ({long_shape[2]}) reaches at least half the copy bandwidth"
    if math.isnan(pct) and row[long_last]["note"]:   # faster than the copy figure itself: no % of it
        lab_report.check(long_claim, row[long_last]["GB_per_s"], True, fmt="{:,.0f} GB/s", why=row[long_last]["note"])
    else:
        lab_report.check(long_claim, pct, pct >= 50, fmt="{:.0f}% of copy",
                         why="" if pct >= 50 else f"{_gbps(row[long_last]['GB_per_s'])} GB/s")
    for case, comparison in r.transpose_results:
        lab_report.check_comparison(f"{backend}: {case.short_name} is slower than summing in place (the copy is an "
                                    "extra pass)", comparison, threshold=1.0, above=False, fmt="{:.2f}x")
    no_op_names = [f["shuffle"] for f in r.facts if f["shares_storage"]]
    lab_report.check("reshape, flatten, a size-1 transpose and a strided permute share the input's storage (no copy runs)",
                     len(no_op_names),
                     len(no_op_names) == 4 and all(f["shares_storage"] == (f["shuffle"] in no_op_names) for f in r.facts),
                     fmt="{:.0f} of 7 share storage",
                     why="" if len(no_op_names) == 4 else f"sharing: {no_op_names}")
    shuffle_row = {x["shuffle"]: x for x in r.shuffle_rows}
    worst = max(no_op_names, key=lambda name: shuffle_row[name]["x_one_copy"])
    worst_pct = 100 * shuffle_row[worst]["x_one_copy"]
    no_kernel = all(shuffle_row[name].get("kernels_per_iter") == 0 for name in no_op_names)
    lab_report.check(f"{backend}: a no-op reshape costs under 10% of one copy of the tensor "
                     f"({shuffle_row[worst]['timed_on']} time)", worst_pct, worst_pct < 10,
                     fmt="{:.2f}% of a copy's time",
                     why=(f"no kernel ran for any of them: the {1e3 * shuffle_row[worst]['median_ms']:.1f} us between "
                          f"the events is the host's call ({worst})") if no_kernel and no_op_names else
                         "" if worst_pct < 10 else
                         f"{worst}: {shuffle_row[worst]['timed_on']} time {1e3 * shuffle_row[worst]['median_ms']:.1f} us, "
                         "the cost of the call itself (a view moves no data)")
    real = shuffle_row[REAL_TRANSPOSE]
    lab_report.check(f"{backend}: a real transpose (NCHW -> NHWC, .contiguous()) moves the tensor at under half the copy "
                     "bandwidth (bytes read + written, as the copy ceiling counts them)", real["pct_of_copy"],
                     real["pct_of_copy"] < 50, fmt="{:.0f}% of copy",
                     why=f"{_gbps(real['GB_per_s'])} GB/s, {real['x_one_copy']:.2f}x the time of one copy at the ceiling "
                         f"({real['timed_on']} time)")
    lab_report.check_comparison(f"{backend}: a permute feeding a matmul is slower than the matmul on a contiguous operand",
                                r.matmul_comparison, threshold=1.0, above=False, fmt="{:.2f}x")
    if has_tensorrt:
        _tensorrt_claims(r, lab_report)
    else:
        for claim in TRT_CLAIMS:
            lab_report.not_applicable(claim, "needs TensorRT: the engine inspector and profiler read a built engine")
    return lab_report


# -- figure -----------------------------------------------------------------------------------------

def grouped_bar_plot(rows: Sequence[dict], *, label: str, value: str, series: str, title: str, ylabel: str,
                     path: str | Path, reference: float | None = None, show: bool = True) -> Path:
    """Bars of `value` per `label`, one colour per `series` (e.g. backend), a dashed line at
    `reference` (e.g. 100 % of the copy ceiling); PNG and CSV into `path` (fixed size)."""
    labels = list(dict.fromkeys(str(r[label]) for r in rows))
    names = list(dict.fromkeys(str(r[series]) for r in rows))
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    for i, name in enumerate(names):
        values = {str(r[label]): r[value] for r in rows if str(r[series]) == name}
        xs = [j + (i - (len(names) - 1) / 2) * width for j, lab in enumerate(labels) if lab in values]
        bars = ax.bar(xs, [values[lab] for lab in labels if lab in values], width=width, label=name)
        for bar in bars:
            ax.annotate(f"{bar.get_height():.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return plots.finish_figure(fig, rows, path, show)
