"""Lab 11's claims: the PyTorch measurements (formats, tactics, per-call cost; GPU or CPU), then the
TensorRT engines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from common import bench, report

from .calls import host_comparison
from .kernels import CPU_CHUNKS, TACTICS, Tactic, cpu_chunk_label
from .trt_plugins import VARIANTS

CLAIMS = {
    "formats": "an op that takes only FP32 channel-major input (converted in and out) is significantly slower "
               "than one that reads the conv's own layout",
    "tactics": "GPU: the best of the five Triton tactics is significantly faster than the worst",
    "bandwidth": "GPU: the best tactic reaches at least 70% of the copy bandwidth",
    "autotune": "GPU: triton.autotune's choice is within the run-to-run spread (or 5%) of the best tactic measured",
    "fused": "GPU: the fused custom op is at least 1.5x faster than the composed eager ops",
    "cpu_chunks": "CPU: the best chunk size is at least 2x faster than the smallest (per-chunk Python cost)",
    "cpu_op": "CPU: the custom op (add into its output, GELU in place) is no slower than the composed eager ops",
    "op_host": "the torch.library custom op costs more host time per call than calling its kernel directly",
    "jit_host": "GPU: the JIT-plugin-style call (pointers wrapped, then launch) costs more host time than a raw launch",
    "graph_host": "GPU: a CUDA graph replay costs less host time per call than the raw Triton launch",
    "compile_host": "torch.compile does not make an opaque custom op cheaper to call (host time not lower)",
    "trt_match": "TensorRT: all three plugin engines match PyTorch (FP16 tolerance)",
    "trt_reformat": "TensorRT: the FP32-LINEAR plugin's engine has more conversion layers than the multi-format one",
    "trt_speed": "TensorRT: the multi-format plugin's engine is significantly faster than the FP32-LINEAR one",
    "trt_tactics": "TensorRT: the builder ran all five tactics of the JIT plugin while timing it",
    "trt_runtime": "TensorRT: the AOT plan loads in a process without the plugin's Python code; the JIT plan does not",
    "trt_host": "TensorRT: the AOT engine costs less host time per enqueue than the JIT engine",
}
GPU_ONLY = "needs Triton on an NVIDIA GPU; the CPU counterpart was measured instead"
CPU_ONLY = "the CPU counterpart; on this GPU the Triton kernel was measured instead"
NO_AOT = "needs ahead-of-time Python plugins (TensorRT 10.9 or newer); this TensorRT built the JIT engines only"


@dataclass
class PyTorchResults:
    """What the lab's PyTorch sections measured, on the GPU (Triton) or on the CPU.

    `host_cmps` holds "custom op" and "torch.compile" everywhere, and "JIT callback" and "graph
    replay" on a GPU; `direct` names the call path the custom op is compared with; `tactic_runs` are
    the runs of the five tactics (GPU) or of the chunk sizes (CPU), `best` and `worst` among them.
    `chosen`, `autotune_cmp` and `copy_gbps` are the GPU's only (None on a CPU)."""

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


def _report(lab_report: report.LabReport | None) -> report.LabReport:
    return lab_report if lab_report is not None else report.LabReport("11_plugins")


def pytorch_claims(r: PyTorchResults, has_triton: bool,
                   lab_report: report.LabReport | None = None) -> report.LabReport:
    """Formats, per-call host cost, and either the GPU's Triton tactics or the CPU's chunk sizes."""
    lab = _report(lab_report)
    fmt_cmp = r.format_cmp
    lab.check(CLAIMS["formats"], fmt_cmp.speedup, fmt_cmp.significant and fmt_cmp.speedup > 1, fmt="{:.2f}x",
              why=f"{r.shape} {r.precision}, {r.device}; spread {fmt_cmp.noise_pct:.1f}%")
    op_cmp = r.host_cmps["custom op"]
    lab.check(CLAIMS["op_host"], op_cmp.speedup, op_cmp.significant and op_cmp.speedup < 1, fmt="{:.2f}x",
              why=f"{r.direct} vs custom op; host spread {op_cmp.noise_pct:.1f}%")
    compile_cmp = r.host_cmps["torch.compile"]
    lab.check(CLAIMS["compile_host"], compile_cmp.speedup, compile_cmp.speedup <= 1 or not compile_cmp.significant,
              fmt="{:.2f}x", why=f"eager custom op vs compiled; host spread {compile_cmp.noise_pct:.1f}%")
    if has_triton:
        _gpu_claims(r, lab)
    else:
        for key in ("tactics", "bandwidth", "autotune", "fused", "jit_host", "graph_host"):
            lab.not_applicable(CLAIMS[key], GPU_ONLY)
        chunk_cmp = bench.compare(r.tactic_runs[cpu_chunk_label(CPU_CHUNKS[0])], r.tactic_runs[r.best])
        lab.check(CLAIMS["cpu_chunks"], chunk_cmp.speedup, chunk_cmp.speedup >= 2 and chunk_cmp.significant,
                  fmt="{:.2f}x", why=f"best: {r.best}; spread {chunk_cmp.noise_pct:.1f}%")
        fused_cmp = r.fused_cmp
        lab.check(CLAIMS["cpu_op"], fused_cmp.speedup, fused_cmp.speedup >= 1 or not fused_cmp.significant,
                  fmt="{:.2f}x", why=f"composed vs custom op; spread {fused_cmp.noise_pct:.1f}%")
    return lab


def _gpu_claims(r: PyTorchResults, lab: report.LabReport) -> None:
    if r.chosen is None or r.autotune_cmp is None or r.copy_gbps is None:
        raise ValueError("the GPU claims need triton.autotune's choice, its comparison and the copy bandwidth")
    tactic_cmp = r.tactic_cmp
    lab.check(CLAIMS["tactics"], tactic_cmp.speedup, tactic_cmp.significant and tactic_cmp.speedup > 1,
              fmt="{:.2f}x", why=f"{r.best.split(':')[0]} vs {r.worst.split(':')[0]}; spread {tactic_cmp.noise_pct:.1f}%")
    best_row = next(row for row in r.sweep_rows if row["config"] == r.best)
    lab.check(CLAIMS["bandwidth"], best_row["pct_of_copy"], best_row["pct_of_copy"] >= 70, fmt="{:.0f}%",
              why=f"{best_row['gb_per_s']:.0f} of {r.copy_gbps:.0f} GB/s")
    autotune_cmp = r.autotune_cmp
    within = not autotune_cmp.significant or abs(autotune_cmp.difference_pct) <= 5
    lab.check(CLAIMS["autotune"], autotune_cmp.speedup, within, fmt="{:.2f}x of best",
              why=f"chose tactic {r.chosen.id}; best measured {r.best.split(':')[0]}")
    fused_cmp = r.fused_cmp
    lab.check(CLAIMS["fused"], fused_cmp.speedup, fused_cmp.speedup >= 1.5 and fused_cmp.significant, fmt="{:.2f}x",
              why=f"spread {fused_cmp.noise_pct:.1f}%")
    jit_cmp, graph_cmp = r.host_cmps["JIT callback"], r.host_cmps["graph replay"]
    lab.check(CLAIMS["jit_host"], jit_cmp.speedup, jit_cmp.significant and jit_cmp.speedup < 1, fmt="{:.2f}x",
              why=f"raw launch vs JIT-style call; host spread {jit_cmp.noise_pct:.1f}%")
    lab.check(CLAIMS["graph_host"], graph_cmp.speedup, graph_cmp.significant and graph_cmp.speedup > 1, fmt="{:.2f}x",
              why=f"host spread {graph_cmp.noise_pct:.1f}%")
    for key in ("cpu_chunks", "cpu_op"):
        lab.not_applicable(CLAIMS[key], CPU_ONLY)


def tensorrt_claims(trt_study: Mapping[str, Any] | None, trt_version: str | None,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """The engines of :func:`~.trt_plugins.study`; all not applicable where it did not run (None):
    TensorRT not installed (`trt_version` None), or installed without Triton on a GPU."""
    lab = _report(lab_report)
    trt_keys = ("trt_match", "trt_reformat", "trt_speed", "trt_tactics", "trt_runtime", "trt_host")
    if trt_study is None:
        why = "needs TensorRT " + ("(not installed)" if trt_version is None else "with Triton on a GPU")
        for key in trt_keys:
            lab.not_applicable(CLAIMS[key], why)
        return lab
    fp32_name, jit_name, aot_name = VARIANTS
    rows = {row["engine"]: row for row in trt_study["rows"]}
    runs = trt_study["runs"]
    all_ok = all(row["matches"] for row in rows.values())
    lab.check(CLAIMS["trt_match"], max(row["rel_error"] for row in rows.values()), all_ok, fmt="{:.1e}",
              why="" if aot_name in rows else f"{len(rows)} engines: no AOT plugin on this TensorRT")
    extra = rows[fp32_name]["conversion_layers"] - rows[jit_name]["conversion_layers"]
    lab.check(CLAIMS["trt_reformat"], extra, extra > 0, fmt="{:+.0f} layers",
              why=f"{rows[fp32_name]['conversion_layers']} vs {rows[jit_name]['conversion_layers']}")
    speed = bench.compare(runs[fp32_name], runs[jit_name])
    lab.check(CLAIMS["trt_speed"], speed.speedup, speed.significant and speed.speedup > 1, fmt="{:.2f}x",
              why=f"spread {speed.noise_pct:.1f}%")
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
    host = host_comparison(runs, jit_name, aot_name)
    lab.check(CLAIMS["trt_host"], host.speedup, host.significant and host.speedup > 1,
              fmt="{:.2f}x", why=f"host spread {host.noise_pct:.1f}%")
    return lab


def claims(pytorch: PyTorchResults, has_triton: bool, trt_study: Mapping[str, Any] | None, trt_version: str | None,
           lab_report: report.LabReport | None = None) -> report.LabReport:
    """All of lab 11's claims, in the notebook's order."""
    return tensorrt_claims(trt_study, trt_version, pytorch_claims(pytorch, has_triton, lab_report))
