"""Lab 05 (fusion), TensorRT's view and the lab's claims.

The TensorRT study (engine layers against ONNX nodes, fused layers, timing, the plugin engine) runs
only where TensorRT is installed (:func:`tensorrt_study`); :func:`tensorrt_claims` and
:func:`claims` turn the measured results into the lab's claims.
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
from .layernorm import TORCH_LAYER_NORM, TRITON


# -- TensorRT (only where it is installed) -------------------------------------------------------

TRT_CLAIMS = {
    "fuses": "TensorRT: the conv engine has fewer layers than its ONNX graph has nodes (it fused)",
    "plugin": "TensorRT: the engine with the FusedLayerNorm plugin matches PyTorch (FP16 tolerance)",
}

def tensorrt_rows(paths: Mapping[str, Path], x: torch.Tensor, reference: torch.Tensor, *, precision: str,
                  tolerance: float) -> tuple[list[dict], dict[str, list[bench.Measurement]]]:
    """Per ONNX graph: its nodes, the engine's layers and fused layers, whether it matches, its latency.

    Registers the FusedLayerNorm plugin first, so a graph with that op parses.
    """
    from ...runners import TensorRTRunner
    from ...trt import BuildConfig, inspect_engine
    from ...trt.plugins import register_plugin

    register_plugin()
    config = BuildConfig(python_plugins="jit")   # the plugin has JIT and AOT implementations: say which
    rows, runs = [], {}
    for name, path in paths.items():
        runner = TensorRTRunner(path, lambda batch: x, config, precision=precision)
        runner.prepare(x.shape[0])
        runner.run()
        error = max_relative_error(runner.output(), reference)
        info = inspect_engine(runner.build.engine)
        runs[name] = [runner.measure(x.shape[0], name=f"{name}, {runner.label}", warmup_ms=100, measure_ms=300)
                      for _ in range(2)]
        rows.append({"graph": name, "onnx_nodes": onnx_node_count(path), "engine_layers": len(info.layers),
                     "fused_layers": len(info.fused_layers()), "matches": error <= tolerance,
                     "latency_ms": bench.median_latency_ms(runs[name]),
                     "layer_names": [layer.name for layer in info.layers]})
    return rows, runs


def tensorrt_study(conv_net: nn.Module, conv_x: torch.Tensor, conv_paths: Mapping[str, Path], conv_reference: torch.Tensor,
                   norm_net: nn.Module, norm_x: torch.Tensor, norm_reference: torch.Tensor, onnx_dir: Path
                   ) -> tuple[list[dict], list[dict], dict[str, list[bench.Measurement]]]:
    """FP16 engines of the conv graphs (with the transpose pairs, rewritten) and of the norm graphs
    (decomposed, fused into the plugin op), exported and rewritten again in FP16; returns the conv
    rows, the norm rows and the norm engines' runs (see :func:`tensorrt_rows`)."""
    tolerance = checks.tolerance("fp16", "model")
    conv16 = {name: onnx_dir / f"fp16_{path.name}" for name, path in conv_paths.items() if name != "original"}
    onnx_tools.export(conv_net, conv_x, onnx_dir / "fp16_conv.onnx", dynamic_batch=False, precision="fp16")
    rewrite(onnx_dir / "fp16_conv.onnx", conv16["with transpose pairs"], plant_transpose_pairs)
    rewrite(conv16["with transpose pairs"], conv16["rewritten"], remove_inverse_transposes)
    norm16 = {"decomposed": onnx_tools.export(norm_net, norm_x, onnx_dir / "fp16_norm.onnx", dynamic_batch=False,
                                              precision="fp16")}
    norm16["fused (plugin op)"], _ = rewrite(norm16["decomposed"], onnx_dir / "fp16_norm_plugin.onnx", fuse_layernorm)
    conv_rows, _ = tensorrt_rows(conv16, conv_x.half(), conv_reference, precision="fp16", tolerance=tolerance)
    norm_rows, norm_runs = tensorrt_rows(norm16, norm_x.half(), norm_reference, precision="fp16", tolerance=tolerance)
    return conv_rows, norm_rows, norm_runs


def tensorrt_claims(conv_rows: list[dict] | None, norm_rows: list[dict] | None, *, tensorrt_installed: bool,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """The TensorRT claims from :func:`tensorrt_study`'s rows; None where TensorRT or Triton is missing."""
    lab_report = lab_report or report.LabReport("05_fusion")
    if conv_rows is None or norm_rows is None:
        why = "needs TensorRT and Triton on an NVIDIA GPU: " + ("TensorRT not installed" if not tensorrt_installed
                                                               else "no GPU/Triton")
        for claim in TRT_CLAIMS.values():
            lab_report.not_applicable(claim, why)
        return lab_report
    rewritten = {row["graph"]: row for row in conv_rows}["rewritten"]
    layers, nodes = rewritten["engine_layers"], rewritten["onnx_nodes"]
    lab_report.check(TRT_CLAIMS["fuses"], layers, layers < nodes, fmt="{:.0f} layers", why=f"{nodes} ONNX nodes")
    plugin_ok = {row["graph"]: row for row in norm_rows}["fused (plugin op)"]["matches"]
    lab_report.check(TRT_CLAIMS["plugin"], float(plugin_ok), plugin_ok, fmt="{:.0f}")
    return lab_report


# -- the claims ----------------------------------------------------------------------------------

@dataclass
class FusionResults:
    """What the lab measured, for :func:`claims`: graph rewrites and ONNX Runtime, then the LayerNorm kernels."""

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


CLAIMS = {
    "rewrite": "the rewrite removes every planted transpose pair and the graph computes the same (ORT)",
    "ort_off": "ORT, optimiser off: removing the transpose pairs makes the graph faster",
    "ort_basic": "ORT cancels the pairs itself: its basic level runs as many nodes with them as without",
    "layernorm": "every hand-written LayerNorm ({depth}) becomes one node and its twin matches within 1e-4",
    "ort_ln_off": "ORT, optimiser off: one LayerNormalization node is faster than the nine-op chain",
    "speedup": "GPU: the fused Triton LayerNorm is at least 1.5x faster than decomposed eager",
    "bandwidth": "GPU: the fused Triton LayerNorm reaches at least 80% of the copy bandwidth",
    "cpu_eager": "CPU: layer_norm is faster than the decomposed LayerNorm in eager PyTorch",
}


def claims(results: FusionResults, *, has_gpu: bool, has_triton: bool,
           lab_report: report.LabReport | None = None) -> report.LabReport:
    """The lab's claims on the rewrites, ONNX Runtime and the LayerNorm kernels."""
    r, lab_report = results, lab_report or report.LabReport("05_fusion")
    rewrite_ok = r.removed == r.planted == r.conv_depth and r.conv_match
    lab_report.check(CLAIMS["rewrite"], r.removed, rewrite_ok, fmt="{:.0f} pairs", why=f"{r.planted} planted")
    off = r.conv_verdicts["disabled"]
    lab_report.check(CLAIMS["ort_off"], off.speedup, off.significant and off.speedup > 1, fmt="{:.2f}x",
                     why=f"run-to-run spread {off.noise_pct:.1f}%")
    with_pairs, rewritten = r.ort_nodes["with transpose pairs"]["basic"], r.ort_nodes["rewritten"]["basic"]
    lab_report.check(CLAIMS["ort_basic"], with_pairs, with_pairs == rewritten, fmt="{:.0f} nodes",
                     why=f"rewritten: {rewritten}; timing at 'all' {r.conv_verdicts['all'].speedup:.2f}x")
    lab_report.check(CLAIMS["layernorm"].format(depth=r.norm_depth), r.fused_count,
                     r.fused_count == r.twin_count == r.norm_depth and r.norm_match,
                     fmt="{:.0f} fused", why=f"max error {max(r.norm_errors.values()):.1e}")
    ln_off = r.norm_verdicts["disabled"]
    lab_report.check(CLAIMS["ort_ln_off"], ln_off.speedup, ln_off.significant and ln_off.speedup > 1, fmt="{:.2f}x",
                     why=f"run-to-run spread {ln_off.noise_pct:.1f}%")
    rows, (n_rows, n_cols) = {row["kernel"]: row for row in r.ln_rows}, r.ln_shape
    if has_triton:
        triton_cmp = r.ln_versus[TRITON]
        lab_report.check(CLAIMS["speedup"], triton_cmp.speedup, triton_cmp.speedup >= 1.5 and triton_cmp.significant,
                         fmt="{:.2f}x", why=f"{n_rows} x {n_cols} {r.ln_precision}; spread {triton_cmp.noise_pct:.1f}%")
        pct = rows[TRITON]["pct_of_copy"]
        lab_report.check(CLAIMS["bandwidth"], pct, pct >= 80, fmt="{:.0f}%",
                         why=f"{rows[TRITON]['gb_per_s']:.0f} of {r.copy_gbps:.0f} GB/s")
    else:
        for key in ("speedup", "bandwidth"):
            lab_report.not_applicable(CLAIMS[key], "needs an NVIDIA GPU with Triton")
    if has_gpu:
        lab_report.not_applicable(CLAIMS["cpu_eager"],
                                  "the CPU counterpart; on this GPU the fused kernel is measured instead")
    else:
        cpu_cmp = r.ln_versus[TORCH_LAYER_NORM]
        lab_report.check(CLAIMS["cpu_eager"], cpu_cmp.speedup, cpu_cmp.speedup > 1 and cpu_cmp.significant,
                         fmt="{:.2f}x", why=f"{n_rows} x {n_cols}; spread {cpu_cmp.noise_pct:.1f}%")
    return lab_report
