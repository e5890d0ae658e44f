"""Lab 05 (fusion), TensorRT's view and the lab's claims.

The TensorRT study (engine layers against ONNX nodes, fused and Shuffle layers, the per-layer
profile, kernel time, the plugin engine) runs only where TensorRT is installed
(:func:`tensorrt_study`); its trtexec commands print everywhere (:func:`trtexec_commands`);
:func:`tensorrt_claims` and :func:`claims` turn the measured results into the lab's claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ... import bench, checks, report
from ... import onnx as onnx_tools
from ...onnx import max_relative_error
from .graphs import fuse_layernorm, onnx_node_count, plant_transpose_pairs, remove_inverse_transposes, rewrite
from .compiled import COMPILE_MODE, EAGER_MODE, PLANTED, REWRITTEN
from .layernorm import TORCH_LAYER_NORM, TRITON


# -- TensorRT (only where it is installed) -------------------------------------------------------

TRT_CLAIMS = {
    "fuses": "TensorRT: the conv engine has fewer layers than its ONNX graph has nodes (it fused)",
    "pairs": "TensorRT removes the planted transpose pairs itself: the planted engine has no more layers "
             "than the rewritten one",
    "pairs_time": "TensorRT: the hand rewrite gains under 5% (kernel time, planted engine vs rewritten)",
    "plugin": "TensorRT: the engine with the FusedLayerNorm plugin matches PyTorch (FP16 tolerance)",
}
#: The FP16 graphs the TensorRT study builds, by study and graph, and the file each is written to.
TRT_GRAPHS = {"conv": {"with transpose pairs": "fp16_conv_planted.onnx", "rewritten": "fp16_conv_rewritten.onnx"},
              "norm": {"decomposed": "fp16_norm.onnx", "fused (plugin op)": "fp16_norm_plugin.onnx"}}


#: What trtexec adds to show what the study reads: the engine's layers and the per-layer profile.
TRTEXEC_EXTRA = ("--dumpLayerInfo", "--dumpProfile")


def build_config(graph: str):
    """The BuildConfig of a graph's engine: the plugin-op graph needs the plugin's JIT implementation."""
    from ...trt import BuildConfig

    return BuildConfig(python_plugins="jit") if graph == "fused (plugin op)" else BuildConfig()


def trtexec_commands(shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """The trtexec command of every engine the TensorRT study builds (files named, no directory);
    printed also where TensorRT is missing. `shapes` gives each study's ("conv", "norm") input shape."""
    from ...trt import trtexec_command

    return [trtexec_command(file, build_config(graph), shapes={"input": shapes[study]}, extra=TRTEXEC_EXTRA,
                            strict=False)
            for study, graphs in TRT_GRAPHS.items() for graph, file in graphs.items()]


def tensorrt_rows(paths: Mapping[str, Path], x: torch.Tensor, reference: torch.Tensor, *, precision: str, tolerance: float, passes: int = bench.PASSES
                  ) -> tuple[list[dict], dict[str, list[bench.Measurement]]]:
    """Per ONNX graph: its nodes, the engine's layers (inspector), fused and Shuffle layers, whether it
    matches, the per-layer profile (its total, the slowest layers, the reformat layers' share), then
    all engines timed in `passes` interleaved passes (event and kernel time).

    Registers the FusedLayerNorm plugin first, so a graph with that op parses.
    """
    from ...runners import TensorRTRunner
    from ...trt import inspect_engine
    from ...trt.plugins import register_plugin
    from ...trt.profile import profile_layers, share_pct

    register_plugin()
    rows, runners = [], {}
    for name, path in paths.items():
        runner = TensorRTRunner(path, lambda batch: x, build_config(name), precision=precision)
        runner.prepare(x.shape[0])
        runner.run()
        error = max_relative_error(runner.output(), reference)
        info = inspect_engine(runner.build.engine)
        times = profile_layers(runner.engine_runner)
        runners[name] = runner
        rows.append({"graph": name, "onnx_nodes": onnx_node_count(path), "engine_layers": len(info.layers),
                     "fused_layers": len(info.fused_layers()), "shuffle_layers": info.count_by_type().get("Shuffle", 0),
                     "matches": error <= tolerance, "profiled_ms": times.median_run_ms(),
                     "reformat_share_pct": share_pct(times, [layer.name for layer in info.reformat_layers()]),
                     "slowest_layers": [(r["layer"], round(r["share_pct"], 1)) for r in times.table(top=3)],
                     "layer_names": [layer.name for layer in info.layers]})
    runs = bench.measure_interleaved(
        {name: {"fn": runner.run, "name": f"{name}, {runner.label}", "backend": runner.label, "stream": runner.stream}
         for name, runner in runners.items()},
        passes=passes, device="cuda", batch_size=x.shape[0], warmup_ms=30, measure_ms=80)
    for row in rows:
        row.update(latency_ms=bench.median_latency_ms(runs[row["graph"]]), **bench.kernel_fields(runs[row["graph"]]))
    return rows, runs


def tensorrt_study(conv_net: nn.Module, conv_x: torch.Tensor, conv_paths: Mapping[str, Path], conv_reference: torch.Tensor,
                   norm_net: nn.Module, norm_x: torch.Tensor, norm_reference: torch.Tensor, onnx_dir: Path
                   ) -> tuple[list[dict], list[dict], dict[str, list[bench.Measurement]]]:
    """FP16 engines of the conv graphs (with the transpose pairs, rewritten) and of the norm graphs
    (decomposed, fused into the plugin op), exported and rewritten again in FP16; returns the conv
    rows, the norm rows and the conv engines' runs (see :func:`tensorrt_rows`)."""
    tolerance = checks.tolerance("fp16", "model")
    conv16 = {name: onnx_dir / file for name, file in TRT_GRAPHS["conv"].items()}
    norm16 = {name: onnx_dir / file for name, file in TRT_GRAPHS["norm"].items()}
    onnx_tools.export(conv_net, conv_x, onnx_dir / "fp16_conv.onnx", dynamic_batch=False, precision="fp16")
    rewrite(onnx_dir / "fp16_conv.onnx", conv16["with transpose pairs"], plant_transpose_pairs)
    rewrite(conv16["with transpose pairs"], conv16["rewritten"], remove_inverse_transposes)
    onnx_tools.export(norm_net, norm_x, norm16["decomposed"], dynamic_batch=False, precision="fp16")
    rewrite(norm16["decomposed"], norm16["fused (plugin op)"], fuse_layernorm)
    conv_rows, conv_runs = tensorrt_rows(conv16, conv_x.half(), conv_reference, precision="fp16",
                                         tolerance=tolerance)
    norm_rows, _ = tensorrt_rows(norm16, norm_x.half(), norm_reference, precision="fp16",
                                 tolerance=tolerance)
    return conv_rows, norm_rows, conv_runs


def tensorrt_claims(conv_rows: list[dict] | None, norm_rows: list[dict] | None, *, tensorrt_installed: bool,
                    conv_runs: Mapping[str, list[bench.Measurement]] | None = None,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """The TensorRT claims from :func:`tensorrt_study`'s rows and conv runs; None where TensorRT or
    Triton is missing."""
    lab_report = lab_report or report.LabReport("05_fusion")
    if conv_rows is None or norm_rows is None or conv_runs is None:
        why = "needs TensorRT and Triton on an NVIDIA GPU: " + ("TensorRT not installed" if not tensorrt_installed
                                                               else "no GPU/Triton")
        for claim in TRT_CLAIMS.values():
            lab_report.not_applicable(claim, why)
        return lab_report
    conv = {row["graph"]: row for row in conv_rows}
    planted, rewritten = conv["with transpose pairs"], conv["rewritten"]
    layers, nodes = rewritten["engine_layers"], rewritten["onnx_nodes"]
    lab_report.check(TRT_CLAIMS["fuses"], layers, layers < nodes, fmt="{:.0f} layers", why=f"{nodes} ONNX nodes")
    lab_report.check(TRT_CLAIMS["pairs"], planted["engine_layers"], planted["engine_layers"] <= layers,
                     fmt="{:.0f} layers", why=f"rewritten: {layers} layers; Shuffle layers {planted['shuffle_layers']} "
                                              f"vs {rewritten['shuffle_layers']}")
    gain = bench.compare(conv_runs["with transpose pairs"], conv_runs["rewritten"], on="kernel")
    lab_report.check_comparison(TRT_CLAIMS["pairs_time"], gain, threshold=1.05, above=False,
                                why=f"per-layer profile {planted['profiled_ms']:.3f} vs {rewritten['profiled_ms']:.3f} ms")
    plugin_ok = {row["graph"]: row for row in norm_rows}["fused (plugin op)"]["matches"]
    lab_report.check(TRT_CLAIMS["plugin"], float(plugin_ok), plugin_ok, fmt="{:.0f}",
                     why="" if plugin_ok else "the plugin engine's output is outside the FP16 model tolerance")
    return lab_report


# -- the claims ----------------------------------------------------------------------------------

@dataclass
class FusionResults:
    """What the lab measured, for :func:`claims`: graph rewrites and ONNX Runtime, the GPU counterpart
    under ``torch.compile``, then the LayerNorm kernels."""

    conv_depth: int
    planted: int                                # transpose pairs planted
    removed: int                                # transpose pairs the rewrite removed
    conv_match: bool                            # every conv graph matches PyTorch (ORT, optimiser off)
    conv_verdicts: Mapping[str, bench.Comparison]      # per ORT level: rewritten vs with transpose pairs
    ort_nodes: Mapping[str, Mapping[str, int]]  # per conv graph, per ORT level: the nodes ORT runs
    norm_depth: int
    fused_count: int                            # LayerNorm chains replaced by the plugin op
    twin_count: int                             # ... and by its standard twin
    norm_match: bool
    norm_errors: Mapping[str, float]
    norm_verdicts: Mapping[str, bench.Comparison]      # per ORT level: twin vs decomposed
    ln_shape: tuple[int, int]                   # rows x cols of the LayerNorm benchmark
    ln_precision: str
    ln_versus: Mapping[str, bench.Comparison]   # per candidate: against decomposed eager
    ln_rows: list[dict]                         # :func:`layernorm_rows`
    copy_gbps: float | None
    compile_rows: list[dict] | None = None      # :func:`compile_study` (GPU only)
    compile_verdicts: Mapping[str, bench.Comparison] | None = None   # :func:`rewrite_verdicts`


CLAIMS = {
    "rewrite": "the rewrite removes every planted transpose pair and the graph computes the same (ORT)",
    "ort_off": "ONNX Runtime (CPU), optimiser off: removing the transpose pairs makes the graph faster",
    "ort_basic": "ONNX Runtime cancels the pairs itself: its basic level runs as many nodes with them as without",
    "eager_pairs": "PyTorch eager (GPU): removing the transpose pairs saves kernels and kernel time",
    "compile_pairs": "torch.compile (GPU): Inductor removes the pairs itself: as many kernels per iteration "
                     "with them as without",
    "layernorm": "every hand-written LayerNorm ({depth}) becomes one node and its twin matches within 1e-4",
    "ort_ln_off": "ONNX Runtime (CPU), optimiser off: one LayerNormalization node is faster than the nine-op chain",
    "speedup": "GPU: the fused Triton LayerNorm is at least 1.5x faster than decomposed eager (kernel time)",
    "bandwidth": "GPU: the fused Triton LayerNorm reaches at least 80% of the copy bandwidth (kernel time)",
    "cpu_eager": "CPU: layer_norm is faster than the decomposed LayerNorm in eager PyTorch",
}
_CPU_TIME = "on a CPU there is no kernel time: the host's clock"


def _compile_claims(r: FusionResults, lab_report: report.LabReport) -> None:
    if r.compile_rows is None or r.compile_verdicts is None:
        for key in ("eager_pairs", "compile_pairs"):
            lab_report.not_applicable(CLAIMS[key], "needs a CUDA GPU: CUPTI's kernel count and kernel time")
        return
    kernels = {(row["graph"], row["mode"]): row["kernels_per_iter"] for row in r.compile_rows}
    eager = (kernels[PLANTED, EAGER_MODE], kernels[REWRITTEN, EAGER_MODE])
    lab_report.check_comparison(CLAIMS["eager_pairs"], r.compile_verdicts[EAGER_MODE], threshold=1.0,
                                why=f"kernels per iteration {eager[0]:.0f} with the pairs, {eager[1]:.0f} without")
    compiled = (kernels[PLANTED, COMPILE_MODE], kernels[REWRITTEN, COMPILE_MODE])
    same = compiled[0] == compiled[1]
    lab_report.check(CLAIMS["compile_pairs"], compiled[0], same, fmt="{:.0f} kernels",
                     why=f"rewritten: {compiled[1]:.0f}; kernel time {r.compile_verdicts[COMPILE_MODE].verdict()}"
                     + ("" if same else "; Inductor kept copies for the round trips"))


def claims(results: FusionResults, *, has_gpu: bool, has_triton: bool,
           lab_report: report.LabReport | None = None) -> report.LabReport:
    """The lab's claims on the rewrites, ONNX Runtime, the GPU counterpart and the LayerNorm kernels."""
    r, lab_report = results, lab_report or report.LabReport("05_fusion")
    rewrite_ok = r.removed == r.planted == r.conv_depth and r.conv_match
    lab_report.check(CLAIMS["rewrite"], r.removed, rewrite_ok, fmt="{:.0f} pairs", why=f"{r.planted} planted")
    lab_report.check_comparison(CLAIMS["ort_off"], r.conv_verdicts["disabled"], threshold=1.0,
                                why=f"one CPU thread; {_CPU_TIME}")
    with_pairs, rewritten = r.ort_nodes["with transpose pairs"]["basic"], r.ort_nodes["rewritten"]["basic"]
    lab_report.check(CLAIMS["ort_basic"], with_pairs, with_pairs == rewritten, fmt="{:.0f} nodes",
                     why=f"rewritten: {rewritten}; timing at 'all' {r.conv_verdicts['all'].speedup:.2f}x")
    _compile_claims(r, lab_report)
    lab_report.check(CLAIMS["layernorm"].format(depth=r.norm_depth), r.fused_count,
                     r.fused_count == r.twin_count == r.norm_depth and r.norm_match,
                     fmt="{:.0f} fused", why=f"max error {max(r.norm_errors.values()):.1e}")
    lab_report.check_comparison(CLAIMS["ort_ln_off"], r.norm_verdicts["disabled"], threshold=1.0,
                                why=f"one CPU thread; {_CPU_TIME}")
    rows, (n_rows, n_cols) = {row["kernel"]: row for row in r.ln_rows}, r.ln_shape
    if has_triton:
        lab_report.check_comparison(CLAIMS["speedup"], r.ln_versus[TRITON], threshold=1.5,
                                    why=f"{n_rows} x {n_cols} {r.ln_precision}")
        pct = rows[TRITON]["pct_of_copy"]
        lab_report.check(CLAIMS["bandwidth"], pct, pct >= 80, fmt="{:.0f}%",
                         why=f"{rows[TRITON]['gb_per_s']:.0f} of {r.copy_gbps:.0f} GB/s (bytes read + written, "
                             "as the copy ceiling counts them)")
    else:
        for key in ("speedup", "bandwidth"):
            lab_report.not_applicable(CLAIMS[key], "needs an NVIDIA GPU with Triton")
    if has_gpu:
        lab_report.not_applicable(CLAIMS["cpu_eager"],
                                  "the CPU counterpart; on this GPU the fused kernel is measured instead")
    else:
        lab_report.check_comparison(CLAIMS["cpu_eager"], r.ln_versus[TORCH_LAYER_NORM], threshold=1.0,
                                    why=f"{n_rows} x {n_cols}; {_CPU_TIME}")
    return lab_report
