"""What a built engine adds to the advice (``--build``, where TensorRT is installed).

The graph checks say where a lesson may apply; the engine says what TensorRT did: which layers it
fused, which reformat layers it inserted, which layers it gave sparse kernels. Built through the
course's TensorRT plumbing (:mod:`common.trt`), so the same API conformance checks cover it.
"""

from __future__ import annotations

from common import env
from common.trt import BuildConfig, EngineRunner, Profile, build_engine, inspect_engine
from common.trt.profile import profile_layers, share_pct
from common.trt.sparsity import layer_sparsity, parse_build_log

from .checks import Context, Finding, concrete, suggested_profile
from .graph import ModelGraph


def _profiles(graph: ModelGraph, ctx: Context) -> tuple[Profile, ...]:
    """One profile over the requested batch sizes for every dynamic input (other unknowns: 1)."""
    lo, opt, hi = suggested_profile(ctx.batches)
    shapes = {}
    for value in graph.inputs:
        shape = graph.shape(value.name) or []
        if shape and not (isinstance(shape[0], int) and shape[0] > 0):
            batch_dim = shape[0]
            shapes[value.name] = tuple(tuple(concrete(shape, batch_dim, b) or []) for b in (lo, opt, hi))
    return (Profile(shapes),) if shapes else ()


def engine_findings(graph: ModelGraph, ctx: Context) -> list[Finding]:
    """Build the model's engine (2:4 sparse kernels allowed), profile it per layer at the opt batch,
    and report what the engine shows."""
    env.require("tensorrt")
    config = BuildConfig(profiles=_profiles(graph, ctx), sparse_weights=True)
    result = build_engine(graph.path, config, verbose=True)
    runner = EngineRunner(result.engine)
    _, opt, _ = suggested_profile(ctx.batches)
    runner.set_input_shapes({value.name: concrete(graph.shape(value.name), (graph.shape(value.name) or [None])[0], opt)
                             for value in graph.inputs})
    info = inspect_engine(result.engine, runner.context(0))
    times = profile_layers(runner)   # per-layer times of the engine at the opt batch
    fused = info.fused_layers()
    reformats = info.reformat_layers()
    sparse = [s.name for s in layer_sparsity(info) if s.sparse_kernel]
    log = parse_build_log(result.log.lines())
    source = f"engine built here in {result.build_seconds:.1f} s (TensorRT {env.detect().tensorrt})"
    findings = [Finding("05_fusion", "engine-fusion", [layer.name for layer in fused],
                        f"{len(info.layers)} engine layers for {len(graph.nodes)} ONNX nodes; {len(fused)} fused",
                        "info", "what TensorRT fused by itself: no rewrite needed there", source)]
    if reformats:
        share = share_pct(times, [layer.name for layer in reformats])
        findings.append(Finding("07_matmul_tensor_cores", "engine-reformats", [layer.name for layer in reformats],
                                f"{len(reformats)} reformat layers, {share:.1f}% of the engine's profiled time at "
                                f"batch {opt}", "advice",
                                "each converts a tensor's layout or type between two layers; aligned channels and "
                                "plugins that accept more formats remove them (labs 07 and 11)", source))
    slowest = [row["layer"] for row in times.table(top=3)] if times.layers else []
    findings.append(Finding("05_fusion", "engine-slowest-layers", slowest,
                            f"the slowest layers at batch {opt} (per-layer profile)", "info",
                            "where the engine spends its time: the layers to look at first", source))
    findings.append(Finding("09_sparsity", "engine-sparse-kernels", sparse,
                            f"{len(sparse)} layers run sparse kernels; {log.summary()}", "info",
                            "TensorRT picks a sparse kernel per layer only where it timed faster", source))
    return findings
