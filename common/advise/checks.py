"""The course's lessons as checks on a model's graph, one group per lab.

Each check is a function ``check(graph, context) -> list[Finding]`` registered with :func:`check`
under the lab that teaches it. A finding names the nodes, the detail (shapes, axes, multiples), the
expected effect and its evidence: a figure this machine measured in the course where one is cached,
otherwise the rule's documentation source.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import onnx

from common.cases import ALIGNMENT, padded

from .evidence import Figures
from .graph import ELEM_TYPE_NAMES, STANDARD_DOMAINS, Dim, ModelGraph, attribute, node_label

SEVERITIES = ("info", "advice", "warning")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")

#: Ops that move no data or only compute shapes: TensorRT folds or removes them, they launch nothing.
SHAPE_OPS = {"Shape", "Constant", "ConstantOfShape", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity",
             "Gather", "Concat", "Slice", "Cast", "Range", "Size", "Dropout"}
REDUCE_OPS = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ReduceL1",
              "ReduceLogSumExp", "ReduceSumSquare"}


@dataclass
class Finding:
    """One place in the model where a lab's lesson applies (the JSON schema's one object)."""

    lab: str              # the lab that teaches it, e.g. "07_matmul_tensor_cores"
    check: str            # the check's name, e.g. "misaligned-matmul"
    nodes: list[str]      # the ONNX nodes (or inputs) concerned
    detail: str           # what was found: shapes, axes, multiples
    severity: str         # "info", "advice" or "warning"
    effect: str           # what to expect and what to do
    evidence: str         # a figure this machine measured in the course, or the documentation source

    def __post_init__(self):
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    """What the user asked for and what this machine measured."""

    precision: str = "fp16"
    batches: tuple[int, ...] = (1,)
    figures: Figures = field(default_factory=Figures)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not self.batches or any(not isinstance(b, int) or b < 1 for b in self.batches):
            raise ValueError(f"batch sizes must be positive integers, got {self.batches!r}")


Check = Callable[[ModelGraph, Context], list[Finding]]
CHECKS: list[tuple[str, str, Check]] = []   # (lab, name, function), in lab order


def check(lab: str, name: str) -> Callable[[Check], Check]:
    """Register a check under the lab that teaches its lesson."""
    def register(fn: Check) -> Check:
        CHECKS.append((lab, name, fn))
        return fn
    return register


# -- shapes and FLOPs ---------------------------------------------------------------------------

def _batch_dim(graph: ModelGraph) -> Dim:
    """The name (or size) of the first input's first dimension: taken as the batch."""
    inputs = graph.inputs
    shape = graph.shape(inputs[0].name) if inputs else None
    return shape[0] if shape else None


def concrete(shape: list[Dim] | None, batch_dim: Dim, batch: int) -> list[int] | None:
    """`shape` with the batch dimension set to `batch` and other unknown dimensions to 1."""
    if shape is None:
        return None
    return [batch if (d == batch_dim and isinstance(d, str)) else (d if isinstance(d, int) and d > 0 else 1)
            for d in shape]


def node_flops(graph: ModelGraph, node: onnx.NodeProto, batch: int) -> int:
    """Multiply-adds x 2 of a MatMul, Gemm or Conv node at `batch` (0 for other ops)."""
    batch_dim = _batch_dim(graph)
    if node.op_type in ("MatMul", "Gemm"):
        a = concrete(graph.shape_at(node.input[0], batch), batch_dim, batch)
        out = concrete(graph.shape_at(node.output[0], batch), batch_dim, batch)
        if not a or not out:
            return 0
        k = a[-2] if node.op_type == "Gemm" and attribute(node, "transA", 0) else a[-1]
        return 2 * math.prod(out) * k
    if node.op_type == "Conv":
        w = graph.weight_shape(node.input[1]) or graph.shape(node.input[1])
        out = concrete(graph.shape_at(node.output[0], batch), batch_dim, batch)
        if not w or not out or any(not isinstance(d, int) for d in w):
            return 0
        return 2 * math.prod(out) * math.prod(w[1:])
    return 0


def _gemm_dims(graph: ModelGraph, node: onnx.NodeProto) -> tuple[int | None, int | None, str | None]:
    """(K, N, weight name) of a MatMul/Gemm whose second operand is a weight, else Nones."""
    if len(node.input) < 2 or not graph.is_weight(node.input[1]):
        return None, None, None
    w = graph.weight_shape(node.input[1])
    if not w or len(w) < 2:
        return None, None, None
    if node.op_type == "Gemm" and attribute(node, "transB", 0):
        return w[-1], w[-2], node.input[1]
    return w[-2], w[-1], node.input[1]


# -- 01 batching ----------------------------------------------------------------------------------

def suggested_profile(batches: tuple[int, ...]) -> tuple[int, int, int]:
    """(min, opt, max) for the batch sizes served: TensorRT tunes its kernels at opt."""
    ordered = sorted(batches)
    return ordered[0], int(statistics.median_low(ordered)), ordered[-1]


@check("01_batching", "dynamic-batch")
def dynamic_batch(graph: ModelGraph, ctx: Context) -> list[Finding]:
    findings = []
    for value in graph.inputs:
        shape = graph.shape(value.name) or []
        if not shape:
            continue
        if isinstance(shape[0], int) and shape[0] > 0:
            findings.append(Finding(
                "01_batching", "dynamic-batch", [value.name], f"input {value.name} has a fixed batch of {shape[0]}",
                "advice", "export with a dynamic batch dimension (torch.onnx.export dynamic_axes) so one engine "
                "serves several batch sizes through an optimization profile",
                "TensorRT developer guide, 'Working with Dynamic Shapes'"))
            continue
        lo, opt, hi = suggested_profile(ctx.batches)
        dims = "x".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in shape[1:])
        trtexec = (f"--minShapes={value.name}:{lo}x{dims} --optShapes={value.name}:{opt}x{dims} "
                   f"--maxShapes={value.name}:{hi}x{dims}")
        knee = ctx.figures.batching_knee()
        findings.append(Finding(
            "01_batching", "dynamic-batch", [value.name],
            f"input {value.name} has a dynamic batch ({shape[0]}); profile for batches {sorted(ctx.batches)}: "
            f"min {lo}, opt {opt}, max {hi} ({trtexec})",
            "info", "TensorRT picks kernels at opt: put opt at the batch served most; throughput grows with the "
            "batch until the GPU saturates",
            knee or "TensorRT developer guide, 'Optimization Profiles'"))
    return findings


# -- 03 CUDA graphs -------------------------------------------------------------------------------

def kernel_nodes(graph: ModelGraph) -> list[onnx.NodeProto]:
    """Nodes that do arithmetic on activations (an upper bound on kernels before fusion)."""
    return [n for n in graph.nodes if n.op_type not in SHAPE_OPS]


@check("03_cuda_graphs", "launch-bound")
def launch_bound(graph: ModelGraph, ctx: Context) -> list[Finding]:
    kernels = len(kernel_nodes(graph))
    flops = sum(node_flops(graph, n, 1) for n in graph.nodes)
    launch_us, launch_source = ctx.figures.launch_cost_us()
    rate_tflops, rate_source = ctx.figures.matmul_rate_tflops(ctx.precision)
    compute_us = flops / (rate_tflops * 1e12) * 1e6 if rate_tflops else float("nan")
    launch_total_us = kernels * launch_us
    bound = launch_total_us > compute_us if not math.isnan(compute_us) else kernels > 100
    detail = (f"{kernels} compute nodes, {flops / 1e9:.3g} GFLOP at batch 1: about {compute_us:.3g} us of matrix "
              f"work at {rate_tflops:.3g} TFLOP/s against {launch_total_us:.3g} us of launches at "
              f"{launch_us:.3g} us each" if rate_tflops else f"{kernels} compute nodes at batch 1")
    if bound:
        return [Finding("03_cuda_graphs", "launch-bound", [], detail, "advice",
                        "at batch 1 the launches may set the pace (a PyTorch per-op cost is an upper bound on an "
                        "engine's enqueue per kernel): compare trtexec's Enqueue Time with its GPU Compute Time, "
                        "and where the host is slower replay the engine as a CUDA graph (trtexec 11 does by "
                        "default; --noCudaGraph measures without), or serve larger batches",
                        f"{launch_source}; {rate_source}")]
    return [Finding("03_cuda_graphs", "launch-bound", [], detail, "info",
                    "the matrix work outweighs the launches at batch 1: a CUDA graph saves little here",
                    f"{launch_source}; {rate_source}")]


# -- 04 shape changes -----------------------------------------------------------------------------

@check("04_shape_changes", "dynamic-dims")
def dynamic_dims(graph: ModelGraph, ctx: Context) -> list[Finding]:
    findings = []
    for value in graph.inputs:
        shape = graph.shape(value.name) or []
        others = [(i, d) for i, d in enumerate(shape) if i > 0 and not (isinstance(d, int) and d > 0)]
        if others:
            dims = ", ".join(f"axis {i} ({d or '?'})" for i, d in others)
            findings.append(Finding(
                "04_shape_changes", "dynamic-dims", [value.name], f"input {value.name} is dynamic beyond the batch: {dims}",
                "advice", "build one optimization profile per shape range you serve and keep one execution context "
                "per profile, so that a request never waits for a profile switch; each context costs device memory "
                "(ExecutionContextAllocationStrategy ON_PROFILE_CHANGE or USER_MANAGED shares it)",
                ctx.figures.first_run_cost() or "TensorRT developer guide, 'Optimization Profiles' and "
                "'Execution Context Allocation Strategies'"))
    return findings


# -- 05 fusion ------------------------------------------------------------------------------------

def _perm(node: onnx.NodeProto, rank: int) -> list[int]:
    return list(attribute(node, "perm", list(reversed(range(rank)))))


@check("05_fusion", "transpose-pair")
def transpose_pairs(graph: ModelGraph, ctx: Context) -> list[Finding]:
    findings = []
    for first in graph.nodes:
        if first.op_type != "Transpose":
            continue
        second = graph.only_consumer(first.output[0])
        if second is None or second.op_type != "Transpose":
            continue
        rank = len(graph.shape(first.input[0]) or attribute(first, "perm", []))
        p1, p2 = _perm(first, rank), _perm(second, rank)
        if [p1[i] for i in p2] == list(range(len(p1))):
            findings.append(Finding(
                "05_fusion", "transpose-pair", [node_label(first), node_label(second)],
                f"Transpose {p1} followed by its inverse {p2}", "info",
                "TensorRT removes inverse transpose pairs itself; remove them in the ONNX anyway (onnx-graphsurgeon) "
                "so every runtime and every reader sees the plain graph",
                "lab 05; TensorRT developer guide, 'Layer Fusion'"))
    return findings


def _inputs_from(graph: ModelGraph, node: onnx.NodeProto | None, op: str) -> onnx.NodeProto | None:
    """The producer of one of `node`'s inputs whose op type is `op`."""
    if node is None:
        return None
    for name in node.input:
        producer = graph.producer.get(name)
        if producer is not None and producer.op_type == op:
            return producer
    return None


@check("05_fusion", "hand-written-layernorm")
def layernorm_chains(graph: ModelGraph, ctx: Context) -> list[Finding]:
    findings = []
    for sqrt in (n for n in graph.nodes if n.op_type == "Sqrt"):
        add = _inputs_from(graph, sqrt, "Add")
        variance = _inputs_from(graph, add, "ReduceMean")
        square = _inputs_from(graph, variance, "Pow") or _inputs_from(graph, variance, "Mul")
        centred = _inputs_from(graph, square, "Sub")
        mean = _inputs_from(graph, centred, "ReduceMean")
        if None in (add, variance, square, centred, mean):
            continue
        chain = [mean, centred, square, variance, add, sqrt]
        findings.append(Finding(
            "05_fusion", "hand-written-layernorm", [node_label(n) for n in chain],
            f"a LayerNorm written as {len(chain)}+ elementwise and reduce ops", "advice",
            "export LayerNormalization (opset 17) so TensorRT runs its normalization layer in one kernel; a "
            "hand-written chain squares activations in the network's precision and can overflow FP16 "
            "(65504) before the mean is taken",
            "lab 05; TensorRT operator support for LayerNormalization (INormalizationLayer)"))
    return findings


@check("05_fusion", "gelu-from-erf")
def gelu_chains(graph: ModelGraph, ctx: Context) -> list[Finding]:
    findings = []
    for erf in (n for n in graph.nodes if n.op_type == "Erf"):
        add = graph.only_consumer(erf.output[0])
        mul = graph.only_consumer(add.output[0]) if add is not None and add.op_type == "Add" else None
        if mul is not None and mul.op_type == "Mul":
            findings.append(Finding(
                "05_fusion", "gelu-from-erf", [node_label(n) for n in (erf, add, mul)],
                "GELU written as x * 0.5 * (1 + erf(x / sqrt(2)))", "info",
                "a pointwise chain that TensorRT fuses into the neighbouring kernel when nothing else consumes "
                "the intermediates; keep it free of extra consumers (or export Gelu, opset 20)",
                "lab 05; TensorRT developer guide, 'Pointwise Fusion'"))
    return findings


@check("05_fusion", "softmax-chain")
def softmax_chains(graph: ModelGraph, ctx: Context) -> list[Finding]:
    findings = []
    for div in (n for n in graph.nodes if n.op_type == "Div"):
        total = _inputs_from(graph, div, "ReduceSum")
        exp = _inputs_from(graph, div, "Exp")
        if total is not None and exp is not None and _inputs_from(graph, total, "Exp") is exp:
            findings.append(Finding(
                "05_fusion", "softmax-chain", [node_label(n) for n in (exp, total, div)],
                "softmax written as exp(x) / sum(exp(x))", "advice",
                "export Softmax: TensorRT has a softmax layer; the hand-written form also skips the max "
                "subtraction, so exp overflows FP16 for inputs above about 11",
                "lab 05; ONNX Softmax operator"))
    return findings


@check("05_fusion", "custom-domain")
def custom_domains(graph: ModelGraph, ctx: Context) -> list[Finding]:
    by_domain: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.nodes:
        if node.domain not in STANDARD_DOMAINS:
            by_domain.setdefault(node.domain, []).append(node)
    return [Finding("05_fusion", "custom-domain", [node_label(n) for n in nodes],
                    f"{len(nodes)} node(s) of domain {domain!r}: {sorted({n.op_type for n in nodes})}", "warning",
                    "TensorRT's ONNX parser needs a plugin for each of these ops (lab 11 writes one with "
                    "tensorrt.plugin); without it the parse fails",
                    "lab 05 and lab 11; TensorRT developer guide, 'Extending TensorRT with Custom Layers'")
            for domain, nodes in by_domain.items()]


# -- 06 reduce and shuffle --------------------------------------------------------------------------

def _reduce_axes(graph: ModelGraph, node: onnx.NodeProto) -> list[int] | None:
    axes = attribute(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1] and graph.is_weight(node.input[1]):
        axes = graph.weight(node.input[1]).tolist()
    return None if axes is None else [int(a) for a in np.atleast_1d(axes)]


@check("06_reduce_shuffle", "reduce-non-trailing")
def reduce_axes(graph: ModelGraph, ctx: Context) -> list[Finding]:
    findings = []
    for node in (n for n in graph.nodes if n.op_type in REDUCE_OPS):
        shape = graph.shape(node.input[0])
        axes = _reduce_axes(graph, node)
        if not shape or axes is None:
            continue
        rank = len(shape)
        axes = sorted(a % rank for a in axes)
        if rank - 1 in axes:
            continue
        lengths = [shape[a] for a in axes]
        findings.append(Finding(
            "06_reduce_shuffle", "reduce-non-trailing", [node_label(node)],
            f"{node.op_type} over axes {axes} (lengths {lengths}) of a rank-{rank} tensor {shape}", "info",
            "a reduction over a non-trailing axis reads strided data; whether that is slower depends on the axis "
            "lengths (lab 06 measures both): keep the reduced axes trailing where the model allows it, and never "
            "add a transpose just to move them",
            ctx.figures.reduce_axis_figure() or "lab 06; TensorRT developer guide, 'Reduce' layer"))
    return findings


@check("06_reduce_shuffle", "transpose-moves-memory")
def moving_transposes(graph: ModelGraph, ctx: Context) -> list[Finding]:
    findings = []
    for node in (n for n in graph.nodes if n.op_type == "Transpose"):
        shape = graph.shape(node.input[0])
        if not shape:
            continue
        perm = _perm(node, len(shape))
        moved = [i for i in perm if not (isinstance(shape[i], int) and shape[i] == 1)]
        if moved != sorted(moved):
            findings.append(Finding(
                "06_reduce_shuffle", "transpose-moves-memory", [node_label(node)],
                f"Transpose {perm} of {shape} reorders data in memory", "info",
                "a real transpose is a copy (a Shuffle layer that launches a kernel unless TensorRT fuses it into a "
                "neighbour); a Reshape or a transpose of size-1 axes shares storage and costs nothing",
                "lab 06; TensorRT developer guide, 'Shuffle' layer"))
    return findings


# -- 07 alignment -----------------------------------------------------------------------------------

@check("07_matmul_tensor_cores", "misaligned-matmul")
def misaligned(graph: ModelGraph, ctx: Context) -> list[Finding]:
    multiple = ALIGNMENT[ctx.precision]
    findings = []
    for node in graph.nodes:
        if node.op_type in ("MatMul", "Gemm"):
            k, n, _ = _gemm_dims(graph, node)
            dims = {"K": k, "N": n}
        elif node.op_type == "Conv":
            w = graph.weight_shape(node.input[1])
            group = attribute(node, "group", 1)
            dims = {"C_in": w[1] * group, "C_out": w[0]} if w and len(w) >= 2 else {}
        else:
            continue
        off = {name: size for name, size in dims.items() if isinstance(size, int) and size % multiple}
        if off:
            fix = ", ".join(f"{name} {size} -> {padded(size, multiple)}" for name, size in off.items())
            findings.append(Finding(
                "07_matmul_tensor_cores", "misaligned-matmul", [node_label(node)],
                f"{node.op_type}: {', '.join(f'{k_}={v}' for k_, v in dims.items())} not all multiples of {multiple} "
                f"({ctx.precision})", "warning",
                f"tensor cores read {ctx.precision} operands in multiples of {multiple}; TensorRT pads or inserts "
                f"reformats itself, at a cost: pad with zeros in the ONNX ({fix})",
                ctx.figures.alignment_figure(ctx.precision) or "lab 07; NVIDIA matrix-multiplication performance "
                "guide ('Tensor Core Requirements')"))
    return findings


@check("07_matmul_tensor_cores", "matmul-4d")
def matmul_4d(graph: ModelGraph, ctx: Context) -> list[Finding]:
    nodes = [n for n in graph.nodes if n.op_type == "MatMul" and len(graph.shape(n.input[0]) or []) >= 4]
    if not nodes:
        return []
    return [Finding("07_matmul_tensor_cores", "matmul-4d", [node_label(n) for n in nodes],
                    f"{len(nodes)} MatMul(s) on rank-4 or higher tensors (e.g. attention heads)", "info",
                    "TensorRT runs a batched MatMul over the leading dimensions as one kernel; check in the engine "
                    "inspector that no reformat or shuffle surrounds it",
                    "lab 07; TensorRT developer guide, 'Matrix Multiply'")]


# -- 08 precision -----------------------------------------------------------------------------------

def flops_by_node(graph: ModelGraph, batch: int) -> list[tuple[onnx.NodeProto, int]]:
    rows = [(n, node_flops(graph, n, batch)) for n in graph.nodes]
    return sorted((r for r in rows if r[1]), key=lambda r: -r[1])


@check("08_low_precision", "precision")
def precision(graph: ModelGraph, ctx: Context) -> list[Finding]:
    types: dict[str, int] = {}
    for node in graph.nodes:
        for out in node.output:
            name = ELEM_TYPE_NAMES.get(graph.elem_types.get(out, 0), "other")
            types[name] = types.get(name, 0) + 1
    qdq = [n for n in graph.nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    findings = [Finding(
        "08_low_precision", "precision", [], f"tensor types: {dict(sorted(types.items(), key=lambda t: -t[1]))}; "
        f"{len(qdq)} Q/DQ nodes", "info",
        "TensorRT 11 networks are strongly typed: the engine runs in the types the ONNX carries (ModelOpt AutoCast "
        "for FP16/BF16, explicit Q/DQ for INT8/FP8)" + ("; Q/DQ already present" if qdq else ""),
        "lab 08; TensorRT developer guide, 'Strongly Typed Networks'")]
    batch = max(ctx.batches)
    rows = flops_by_node(graph, batch)
    total = sum(f for _, f in rows)
    if not total:
        return findings
    big = [(n, f) for n, f in rows if f / total >= 0.05]
    crossover, source = ctx.figures.low_precision_crossover_gflop()
    small = [n for n, f in rows if f / 1e9 < crossover]
    if big:
        share = sum(f for _, f in big) / total
        findings.append(Finding(
            "08_low_precision", "flops-share", [node_label(n) for n, _ in big],
            f"{len(big)} layers carry {share:.0%} of {total / 1e9:.3g} GFLOP at batch {batch}", "info",
            "these are where FP8/INT8 can pay: quantize them first and keep sensitive small layers in FP16", source))
    if small:
        findings.append(Finding(
            "08_low_precision", "too-small-for-low-precision", [node_label(n) for n in small],
            f"{len(small)} layers below {crossover:g} GFLOP at batch {batch}", "info",
            "lower precision will not pay there: the quantize step and launch cost outweigh the faster math", source))
    return findings


# -- 09 sparsity ------------------------------------------------------------------------------------

def is_2_4_along_input(weight: np.ndarray, op_type: str, trans_b: bool = False) -> bool:
    """Whether every group of 4 consecutive input channels holds at most 2 non-zeros."""
    if op_type == "Conv":
        w = np.moveaxis(weight, 1, -1)            # (C_out, kh, kw, C_in): input channels innermost
    else:
        w = weight if trans_b else weight.T       # (N, K) rows of input channels
    k = w.shape[-1]
    if k % 4:
        return False
    groups = (w.reshape(-1, k // 4, 4) != 0).sum(axis=-1)
    return bool((groups <= 2).all())


@check("09_sparsity", "sparsity")
def sparsity(graph: ModelGraph, ctx: Context) -> list[Finding]:
    crossover, source = ctx.figures.sparsity_crossover_gflop()
    batch = max(ctx.batches)
    already, large, small = [], [], []
    for node, flops in flops_by_node(graph, batch):
        name = node.input[1] if len(node.input) > 1 else ""
        if not graph.is_weight(name):
            continue
        trans_b = bool(attribute(node, "transB", 0)) if node.op_type == "Gemm" else False
        if is_2_4_along_input(graph.weight(name), node.op_type, trans_b):
            already.append(node)
        (large if flops / 1e9 >= crossover else small).append(node)
    findings = []
    if already:
        findings.append(Finding(
            "09_sparsity", "already-2-4", [node_label(n) for n in already],
            f"{len(already)} layers' weights are already 2:4 along the input channels", "advice",
            "build with the SPARSE_WEIGHTS builder flag (trtexec --sparsity=enable); TensorRT then times sparse "
            "and dense kernels per layer and keeps the faster (its build log lists eligible and picked layers)",
            "lab 09; TensorRT developer guide, 'Structured Sparsity'"))
    if large:
        findings.append(Finding(
            "09_sparsity", "large-enough-for-2-4", [node_label(n) for n in large],
            f"{len(large)} layers at or above {crossover:g} GFLOP at batch {batch}", "info",
            "large enough for 2:4 kernels to win on kernel time: prune them with ModelOpt, fine-tune, check accuracy",
            source))
    if small:
        findings.append(Finding(
            "09_sparsity", "too-small-for-2-4", [node_label(n) for n in small],
            f"{len(small)} layers below {crossover:g} GFLOP at batch {batch}", "info",
            "below the size where the counterpart's 2:4 kernels (PyTorch, cuSPARSELt, kernel time) started to win; "
            "TensorRT times sparse and dense tactics per layer at build time and keeps the faster, so expect dense "
            "kernels there and read the build log's picked layers",
            source))
    return findings


# -- 10 builder -------------------------------------------------------------------------------------

@check("10_builder", "builder-effort")
def builder_effort(graph: ModelGraph, ctx: Context) -> list[Finding]:
    nodes, weight_mb = len(graph.nodes), graph.weight_bytes() / 2**20
    large = nodes > 500 or weight_mb > 200
    return [Finding(
        "10_builder", "builder-effort", [], f"{nodes} nodes, {weight_mb:,.1f} MiB of weights", "info",
        ("a long build: keep a timing cache (trtexec --timingCacheFile) so rebuilds reuse tactic timings, and "
         "try builder optimization level 4-5 only if the default (3) leaves speed on the table") if large else
        ("a quick build at the default optimization level (3); a timing cache still makes rebuilds faster, and "
         "level 5 is cheap to try on a model this size"),
        ctx.figures.timing_cache_figure() or "lab 10; TensorRT developer guide, 'Builder Optimization Level' "
        "and 'Timing Cache'")]


def run_checks(graph: ModelGraph, ctx: Context) -> list[Finding]:
    """Every registered check on `graph`, in lab order."""
    findings: list[Finding] = []
    for _, _, fn in CHECKS:
        findings.extend(fn(graph, ctx))
    return findings
