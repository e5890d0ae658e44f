"""Lab 11's claims: the PyTorch measurements (formats, tactics, per-call cost; GPU or CPU), then the
TensorRT engines.

Ratios are decided from their 95% interval over interleaved passes (``check_comparison``): kernel
effects (formats, tactics, fusion, reformats) on kernel time where CUPTI measured it (on a CPU, which
has none, on host time, and the claim says so); per-call costs on host time per call, each ratio
being the host time of one call path as a multiple of another's.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from common import bench, report

from .calls import device_comparison, host_ratio
from .kernels import CPU_CHUNKS, TACTICS, Tactic, cpu_chunk_label
from .trt_plugins import VARIANTS

CLAIMS = {
    "formats": "PyTorch: the op that takes only FP32 channel-major input, with its permute-and-cast copies in and "
               "out, takes longer than the op that reads the conv's own layout",
    "tactics": "GPU: the best of the five Triton tactics is faster than the worst",
    "bandwidth": "GPU: the best tactic reaches at least 70% of the copy bandwidth (kernel time)",
    "autotune": "GPU: triton.autotune's choice runs within 5% of the best tactic measured",
    "fused": "GPU: the fused custom op's kernel is at least 1.5x faster than the composed eager ops' kernels",
    "cpu_chunks": "CPU: the best chunk size is at least 2x faster than the smallest (per-chunk Python cost)",
    "cpu_op": "CPU: the custom op (add into its output, GELU in place) runs at most 10% slower than the composed "
              "eager ops",
    "op_host": "PyTorch: the torch.library custom op takes more host time per call than calling its kernel directly",
    "jit_host": "GPU: the JIT-plugin-style call (pointers wrapped, then launch) takes more host time per call than "
                "a raw launch",
    "graph_host": "GPU: a CUDA graph replay takes less host time per call than the raw Triton launch",
    "compile_host": "PyTorch: torch.compile does not make the opaque custom op 10% cheaper to call (host time)",
    "trt_match": "TensorRT: all three plugin engines match PyTorch (FP16 tolerance)",
    "trt_reformat": "TensorRT: the FP32-LINEAR plugin's engine has more conversion layers than the multi-format one",
    "trt_share": "TensorRT: the FP32-LINEAR engine spends at least 10% of its profiled time in conversion layers",
    "trt_speed": "TensorRT: the multi-format plugin's engine is faster than the FP32-LINEAR one",
    "trt_tactics": "TensorRT: the builder ran all five tactics of the JIT plugin while timing it",
    "trt_runtime": "TensorRT: the AOT plan loads in a process without the plugin's Python code; the JIT plan does not",
    "trt_host": "TensorRT: the AOT engine takes less host time per enqueue than the JIT engine",
}
GPU_ONLY = "needs Triton on an NVIDIA GPU; the CPU counterpart was measured instead"
CPU_ONLY = "the CPU counterpart; on this GPU the Triton kernel was measured instead"
NO_AOT = "needs ahead-of-time Python plugins (TensorRT 10.9 or newer); this TensorRT built the JIT engines only"
HOST_FMT = "{:.2f}x"
#: The least share of the FP32-LINEAR engine's profiled time its conversion layers are expected to take.
MIN_CONVERSION_SHARE_PCT = 10.0


@dataclass
class PyTorchResults:
    """What the lab's PyTorch sections measured, on the GPU (Triton) or on the CPU.

    `format_cmp` is the converted variant against the direct one (device time); `host_cmps` are host-time
    ratios (:func:`~.calls.host_ratio`): "custom op" (custom op / direct call) and "torch.compile"
    (compiled / custom op) everywhere, "JIT callback" and "graph replay" (each / raw launch) on a GPU;
    `direct` names the call path the custom op is compared with; `tactic_runs` are the runs of the five
    tactics (GPU) or of the chunk sizes (CPU), `best` and `worst` among them; `format_bound` says what
    the bytes moved allow (:func:`~.calls.format_bounds`). `chosen`, `autotune_cmp` and `copy_gbps` are
    the GPU's only (None on a CPU)."""

    shape: tuple[int, ...]
    precision: str
    device: str
    format_cmp: bench.Comparison
    host_cmps: Mapping[str, bench.Comparison]
    direct: str
    tactic_runs: Mapping[str, list[bench.Measurement]]
    best: str
    worst: str
    tactic_cmp: bench.Comparison
    fused_cmp: bench.Comparison
    sweep_rows: Sequence[Mapping[str, Any]]
    copy_gbps: float | None = None
    chosen: Tactic | None = None
    autotune_cmp: bench.Comparison | None = None
    format_bound: Sequence[Mapping[str, Any]] = ()


def _report(lab_report: report.LabReport | None) -> report.LabReport:
    return lab_report if lab_report is not None else report.LabReport("11_plugins")


def _on(comparison: bench.Comparison) -> str:
    return "" if comparison.on == "kernel" else "no kernel time here: host time"


def _bound_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """What the bytes moved allow, in one line: the bytes ratio, and how near the copy ceiling each ran."""
    if not rows:
        return ""
    converted = max(rows, key=lambda r: r["bytes_ratio"])
    text = f"the bytes moved allow {converted['bytes_ratio']:.1f}x at equal copy speed"
    speeds = [f"{r['pct_of_bound_speed']:.0f}%" for r in rows if r["pct_of_bound_speed"] == r["pct_of_bound_speed"]]
    return text + (f"; speed vs the copy ceiling {' / '.join(speeds)}" if speeds else "")


def pytorch_claims(r: PyTorchResults, has_triton: bool,
                   lab_report: report.LabReport | None = None) -> report.LabReport:
    """Formats, per-call host cost, and either the GPU's Triton tactics or the CPU's chunk sizes."""
    lab = _report(lab_report)
    why = "; ".join(t for t in (f"{r.shape} {r.precision}, {r.device}", _bound_text(r.format_bound),
                                _on(r.format_cmp)) if t)
    lab.check_comparison(CLAIMS["formats"], r.format_cmp, threshold=1.0, why=why)
    lab.check_comparison(CLAIMS["op_host"], r.host_cmps["custom op"], threshold=1.0, fmt=HOST_FMT,
                         why=f"the custom op's host time per call as a multiple of the {r.direct}'s")
    lab.check_comparison(CLAIMS["compile_host"], r.host_cmps["torch.compile"], threshold=0.9, fmt=HOST_FMT,
                         why="the compiled call's host time per call as a multiple of the eager custom op's")
    if has_triton:
        _gpu_claims(r, lab)
    else:
        for key in ("tactics", "bandwidth", "autotune", "fused", "jit_host", "graph_host"):
            lab.not_applicable(CLAIMS[key], GPU_ONLY)
        chunk_cmp = device_comparison(r.tactic_runs[cpu_chunk_label(CPU_CHUNKS[0])], r.tactic_runs[r.best])
        lab.check_comparison(CLAIMS["cpu_chunks"], chunk_cmp, threshold=2.0, why=f"best: {r.best}")
        lab.check_comparison(CLAIMS["cpu_op"], r.fused_cmp, threshold=0.9, why="composed ops against the custom op")
    return lab


def _gpu_claims(r: PyTorchResults, lab: report.LabReport) -> None:
    if r.chosen is None or r.autotune_cmp is None or r.copy_gbps is None:
        raise ValueError("the GPU claims need triton.autotune's choice, its comparison and the copy bandwidth")
    lab.check_comparison(CLAIMS["tactics"], r.tactic_cmp, threshold=1.0,
                         why=f"{r.best.split(':')[0]} against {r.worst.split(':')[0]}")
    best_row = next(row for row in r.sweep_rows if row["config"] == r.best)
    why = f"{best_row['gb_per_s']:.0f} of {r.copy_gbps:.0f} GB/s, on {best_row.get('timed_on', 'event')} time"
    pass_ms = best_row.get("kernel_ms", math.nan)
    if math.isnan(pass_ms):   # no kernel time: the event time
        pass_ms = best_row.get("latency_ms", math.nan)
    if best_row["pct_of_copy"] < 70 and not math.isnan(pass_ms):
        why += (f"; the open question: the ceiling was measured on copies of 1 GiB and more, this pass lasts "
                f"{1e3 * pass_ms:.0f} us, where a kernel's ramp-up and last partial wave weigh more; "
                "a copy of the same tensor was not timed here")
    lab.check(CLAIMS["bandwidth"], best_row["pct_of_copy"], best_row["pct_of_copy"] >= 70, fmt="{:.0f}%", why=why)
    lab.check_comparison(CLAIMS["autotune"], r.autotune_cmp, threshold=0.95,
                         why=f"chose tactic {r.chosen.id}; best measured {r.best.split(':')[0]}")
    lab.check_comparison(CLAIMS["fused"], r.fused_cmp, threshold=1.5, why="composed ops against the custom op")
    lab.check_comparison(CLAIMS["jit_host"], r.host_cmps["JIT callback"], threshold=1.0, fmt=HOST_FMT,
                         why="the JIT-style call's host time per call as a multiple of the raw launch's")
    lab.check_comparison(CLAIMS["graph_host"], r.host_cmps["graph replay"], threshold=1.0, above=False,
                         fmt=HOST_FMT, why="the graph replay's host time per call as a multiple of the raw launch's")
    for key in ("cpu_chunks", "cpu_op"):
        lab.not_applicable(CLAIMS[key], CPU_ONLY)


def tensorrt_claims(trt_study: Mapping[str, Any] | None, trt_version: str | None,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """The engines of :func:`~.trt_plugins.study`; all not applicable where it did not run (None):
    TensorRT not installed (`trt_version` None), or installed without Triton on a GPU."""
    lab = _report(lab_report)
    trt_keys = ("trt_match", "trt_reformat", "trt_share", "trt_speed", "trt_tactics", "trt_runtime", "trt_host")
    if trt_study is None:
        why = "needs TensorRT " + ("(not installed)" if trt_version is None else "with Triton on a GPU")
        for key in trt_keys:
            lab.not_applicable(CLAIMS[key], why)
        return lab
    fp32_name, jit_name, aot_name = VARIANTS
    rows = {row["engine"]: row for row in trt_study["rows"]}
    runs = trt_study["runs"]
    all_ok = all(row["matches"] for row in rows.values())
    worst = max(rows.values(), key=lambda row: row["rel_error"])
    lab.check(CLAIMS["trt_match"], worst["rel_error"], all_ok, fmt="{:.1e}",
              why="; ".join(t for t in ("" if all_ok else f"largest error: {worst['engine']}",
                                        "" if aot_name in rows else f"{len(rows)} engines: no AOT plugin on this "
                                                                    "TensorRT") if t))
    extra = rows[fp32_name]["conversion_layers"] - rows[jit_name]["conversion_layers"]
    lab.check(CLAIMS["trt_reformat"], extra, extra > 0, fmt="{:+.0f} layers",
              why=f"{rows[fp32_name]['conversion_layers']} vs {rows[jit_name]['conversion_layers']}")
    share = rows[fp32_name]["conversion_share_pct"]
    lab.check(CLAIMS["trt_share"], share, share >= MIN_CONVERSION_SHARE_PCT, fmt="{:.0f}%",
              why=f"per-layer profile; multi-format engine: {rows[jit_name]['conversion_share_pct']:.0f}%")
    lab.check_comparison(CLAIMS["trt_speed"], device_comparison(runs[fp32_name], runs[jit_name]), threshold=1.0,
                         why="multi-format engine against the FP32-LINEAR one")
    timed = trt_study["tactics_timed"][jit_name]
    lab.check(CLAIMS["trt_tactics"], len(timed), set(timed) == {t.id for t in TACTICS}, fmt="{:.0f} tactics",
              why=f"kept tactic {rows[jit_name]['runtime_tactic']} (inspector: {rows[jit_name]['plugin_tactic']})")
    if aot_name not in rows:
        for key in ("trt_runtime", "trt_host"):
            lab.not_applicable(CLAIMS[key], NO_AOT)
        return lab
    loads = (rows[aot_name]["loads_without_python"], rows[jit_name]["loads_without_python"])
    lab.check(CLAIMS["trt_runtime"], float(loads[0] and not loads[1]), loads[0] and not loads[1], fmt="{:.0f}",
              why=f"AOT loads: {loads[0]}, JIT loads: {loads[1]}")
    lab.check_comparison(CLAIMS["trt_host"], host_ratio(runs, jit_name, aot_name), threshold=1.0, above=False,
                         fmt=HOST_FMT,
                         why="the AOT engine's host time per enqueue as a multiple of the JIT engine's")
    return lab


def claims(pytorch: PyTorchResults, has_triton: bool, trt_study: Mapping[str, Any] | None, trt_version: str | None,
           lab_report: report.LabReport | None = None) -> report.LabReport:
    """All of lab 11's claims, in the notebook's order."""
    return tensorrt_claims(trt_study, trt_version, pytorch_claims(pytorch, has_triton, lab_report))
