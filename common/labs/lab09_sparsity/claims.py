"""Lab 09 (2:4 structured sparsity): the claims, as functions of what the experiments measured.

Three sections, in the order the claims table lists them: pruning (the pattern, its accuracy cost and
recovery, SparseGPT's masks), speed (the GEMM sweep and its crossover, PyTorch's per-call set-up, the
digits models' layers, zeros in a dense kernel) and TensorRT (``SPARSE_WEIGHTS``). :func:`claims` runs
all three. Speed is a device effect: it is judged on the kernels' own time (CUPTI) wherever that was
measured, on host time on a CPU, and every ratio is decided from its 95% interval over passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common import bench, report

from .gemms import LayerStudy, crossover_gflop


@dataclass
class Results:
    """What lab 09's experiments measured, as its claims read it (the notebook's variables)."""

    #: accuracy_row()s: the dense model first, then magnitude-pruned, ..., the fine-tuned model last.
    accuracy: list[dict[str, Any]]
    ft_epochs: int
    #: the layers ModelOpt pruned to 2:4, and the groups of 4 that break the rule in them.
    pruned_names: list[str]
    magnitude_broken: int
    #: after fine-tuning and export: broken groups in the same layers, and the layers pruned_layers() finds.
    after_broken: int
    after_pruned: list[str]
    sgpt_broken: int
    modelopt: str
    has_sparse: bool
    #: a GPU with sparse tensor cores and a PyTorch backend that runs on it.
    sparse_runs: bool
    #: labels of the sweep's largest and smallest GEMMs.
    largest: str
    smallest: str
    zeros_cmp: bench.Comparison
    wide: int
    wide_batch: int
    #: per sweep GEMM: best sparse against best dense, on kernel time (where sparse_runs).
    headline: dict[str, bench.Comparison] = field(default_factory=dict)
    #: per sweep GEMM: the same two cases per call (event time); and each GEMM's size in GFLOP.
    per_call: dict[str, bench.Comparison] = field(default_factory=dict)
    gflop: dict[str, float] = field(default_factory=dict)
    #: per backend: None where it runs, else its error (backend_status()).
    backend_status: dict[str, str | None] = field(default_factory=dict)
    layers: LayerStudy | None = None
    #: per model tag: tensorrt_sparsity_study()'s result; empty where TensorRT did not run.
    trt_studies: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def texts(self) -> dict[str, str]:
        return claim_texts(self.ft_epochs, self.largest, self.smallest, self.wide)

    @property
    def crossover_rows(self) -> list[dict]:
        """Per sweep GEMM: its size and the best sparse kernel's speedup over the best dense one."""
        return [{"gemm": gemm, "gflop": self.gflop[gemm], "speedup": cmp.speedup} for gemm, cmp in self.headline.items()]

    @property
    def crossover(self) -> float | None:
        """The sweep's crossover on kernel time (:func:`.gemms.crossover_gflop`), in GFLOP."""
        return crossover_gflop(self.crossover_rows)


def claim_texts(ft_epochs: int, largest: str, smallest: str, wide: int) -> dict[str, str]:
    """Each claim's sentence, by key."""
    return {
        "pattern": "ModelOpt sparse_magnitude leaves every pruned layer 2:4 along its input channels (own checker)",
        "cost": "2:4 magnitude pruning without fine-tuning costs accuracy (drop larger than one standard error)",
        "recover": f"{ft_epochs} epochs of fine-tuning with the mask kept recover the dense accuracy within 0.5 points",
        "kept": "fine-tuning and mts.export keep the 2:4 pattern",
        "sparsegpt": "ModelOpt SparseGPT's convolution masks are 2:4 along the input channels",
        "largest": f"the 2:4 sparse kernel is at least 1.15x faster than dense FP16 on the largest GEMM of the sweep "
                   f"({largest}; kernel time)",
        "smallest": f"the 2:4 sparse kernel is slower than dense FP16 on the smallest GEMM of the sweep ({smallest}; "
                    "kernel time)",
        "narrow_n": "the 2:4 sparse kernel is slower than dense FP16 at 768x3072x8192 (only 768 output features; "
                    "kernel time)",
        "crossover": "the 2:4 kernel's crossover on kernel time: from this GEMM size on it beats dense FP16 at every "
                     "larger size of the sweep",
        "per_call": "PyTorch cuSPARSELt: at the smallest GEMM of the sweep a sparse call takes at least twice its "
                    "kernels' time (the product is set up on the host at every call)",
        "cutlass": "PyTorch's CUTLASS 2:4 kernels run on this GPU (the alternative to cuSPARSELt)",
        "layers_narrow": "the trained digits model's pruned convolutions are too small to gain from sparse kernels "
                         "(kernel time)",
        "layers_wide": f"the wide DigitsCNN({wide})'s pruned convolutions run faster as 2:4 sparse GEMMs (larger "
                       "layer; kernel time)",
        "zeros": "a dense kernel gains under 5% from 50% zeros (kernel time on a GPU, host time on a CPU)",
        "trt_eligible": "TensorRT reports both pruned convolutions of the digits model as eligible for sparse math",
        "trt_picked": f"TensorRT picks a sparse kernel for at least one layer of DigitsCNN({wide})",
        "trt_speed": f"the SPARSE_WEIGHTS engine of DigitsCNN({wide}) is faster than its dense engine (kernel time)",
    }


#: The speed claims that need semi-structured sparse kernels (not applicable without them).
SPEED_KEYS = ("largest", "smallest", "narrow_n", "crossover", "per_call", "cutlass", "layers_narrow", "layers_wide")


def pruning_claims(r: Results, lab_report: report.LabReport) -> report.LabReport:
    """The 2:4 pattern after ModelOpt, the accuracy pruning costs and fine-tuning wins back, SparseGPT's masks."""
    claims = r.texts
    dense_acc, pruned_acc, tuned_acc = r.accuracy[0], r.accuracy[1], r.accuracy[-1]
    lab_report.check(claims["pattern"], r.magnitude_broken, r.magnitude_broken == 0 and len(r.pruned_names) > 0,
                     fmt="{:.0f} broken groups", why=f"layers {', '.join(r.pruned_names)}")
    drop = dense_acc["accuracy_pct"] - pruned_acc["accuracy_pct"]
    lab_report.check(claims["cost"], drop, drop > pruned_acc["std_error_pts"], fmt="{:.2f} points",
                     why=f"{dense_acc['accuracy_pct']:.2f}% -> {pruned_acc['accuracy_pct']:.2f}% (n = {pruned_acc['n']}, "
                         f"SE {pruned_acc['std_error_pts']:.2f})")
    gap = tuned_acc["accuracy_pct"] - dense_acc["accuracy_pct"]
    lab_report.check(claims["recover"], gap, gap >= -0.5, fmt="{:+.2f} points vs dense",
                     why=f"{tuned_acc['accuracy_pct']:.2f}% vs {dense_acc['accuracy_pct']:.2f}% (n = {tuned_acc['n']})")
    lab_report.check(claims["kept"], r.after_broken, r.after_broken == 0 and r.after_pruned == r.pruned_names,
                     fmt="{:.0f} broken groups")
    lab_report.check(claims["sparsegpt"], r.sgpt_broken, r.sgpt_broken == 0, fmt="{:.0f} broken groups",
                     why=f"its groups run in memory order (along the kernel); ModelOpt {r.modelopt}")
    return lab_report


def _sparse_case(cmp: bench.Comparison) -> str:
    """'cuSPARSELt, F.linear(x, W)' from the case label 'NxKxM cuSPARSELt, F.linear(x, W)'."""
    return cmp.label_b.split(" ", 1)[1] if " " in cmp.label_b else cmp.label_b


def _crossover_claim(r: Results, lab_report: report.LabReport) -> None:
    text = r.texts["crossover"]
    rows = sorted(r.crossover_rows, key=lambda row: row["gflop"])
    crossover = r.crossover
    if crossover is None:
        # the advisor reads the value as the size below which a layer is too small: the largest measured
        lab_report.check(text, rows[-1]["gflop"], False, fmt="none up to {:,.0f} GFLOP",
                         why=f"sparse loses at the largest GEMM ({rows[-1]['gemm']}, {rows[-1]['speedup']:.2f}x): "
                             "the crossover lies beyond the sweep")
        return
    at = next(row for row in rows if row["gflop"] == crossover)
    below = [row for row in rows if row["gflop"] < crossover]
    loses = (f"loses at {below[-1]['gflop']:,.0f} GFLOP ({below[-1]['gemm']}, {below[-1]['speedup']:.2f}x)" if below
             else "wins at every size of the sweep")
    wins_below = [f"{row['gemm']} {row['speedup']:.2f}x" for row in below if row["speedup"] >= 1]
    also = f"; below it sparse also wins at {', '.join(wins_below)}: shape matters, not size alone" if wins_below else ""
    lab_report.check(text, crossover, True, fmt="{:,.0f} GFLOP",
                     why=f"{at['gemm']} {at['speedup']:.2f}x; {loses}{also}; best sparse vs best dense per GEMM")


def _per_call_claim(r: Results, lab_report: report.LabReport) -> None:
    text = r.texts["per_call"]
    kernel, call = r.headline[r.smallest], r.per_call.get(r.smallest)
    if kernel.on != "kernel" or call is None:
        lab_report.not_applicable(text, "kernel time was not measured in this run (CUPTI unavailable)")
        return
    ratio = call.median_b_ms / kernel.median_b_ms
    lab_report.check_ratio(text, ratio, bench.ratio_interval(call.passes_b_ms, kernel.passes_b_ms), threshold=2.0,
                           fmt="{:.1f}x", why=f"{_sparse_case(kernel)}: {call.median_b_ms:.3g} ms per call, its kernels "
                                              f"{kernel.median_b_ms:.3g} ms")


def _layer_claims(r: Results, lab_report: report.LabReport) -> None:
    claims, layers = r.texts, r.layers
    if layers is None:
        raise ValueError("the sparse kernels ran (sparse_runs) but the results carry no layer study")
    narrow = {gemm: cmp for gemm, cmp in layers.best.items() if gemm.startswith("DigitsCNN(32)")}
    wide_layers = sorted((g for g in layers.best if not g.startswith("DigitsCNN(32)")), key=layers.flops.get)
    if narrow:
        gemm, best = max(narrow.items(), key=lambda item: item[1].speedup)
        lab_report.check_comparison(claims["layers_narrow"], best, above=False,
                                    why=f"the layer that gains most: {gemm}, best sparse vs best dense")
    else:
        lab_report.not_applicable(claims["layers_narrow"],
                                  f"the sparse backends refused these shapes: {layers.refused.get('DigitsCNN(32)', {})}")
    if wide_layers:
        lab_report.check_comparison(claims["layers_wide"], layers.best[wide_layers[-1]],
                                    why=f"{wide_layers[-1]}, batch {r.wide_batch}")
    else:
        lab_report.not_applicable(claims["layers_wide"], "the sparse backends refused these shapes: "
                                  f"{layers.refused.get(f'DigitsCNN({r.wide})', {})}")


def _gpu_speed_claims(r: Results, lab_report: report.LabReport) -> None:
    claims = r.texts
    big = r.headline[r.largest]
    lab_report.check_comparison(claims["largest"], big, threshold=1.15, why=f"best sparse {_sparse_case(big)} vs best dense")
    lab_report.check_comparison(claims["smallest"], r.headline[r.smallest], above=False, why="best of each")
    if "768x3072x8192" in r.headline:
        lab_report.check_comparison(claims["narrow_n"], r.headline["768x3072x8192"], above=False, why="best of each")
    else:
        lab_report.not_applicable(claims["narrow_n"], "not in this scale's sweep")
    _crossover_claim(r, lab_report)
    _per_call_claim(r, lab_report)
    cutlass = r.backend_status["CUTLASS"]
    lab_report.check(claims["cutlass"], float(cutlass is None), cutlass is None, fmt="{:.0f}", why=cutlass or "runs")
    _layer_claims(r, lab_report)


def speed_claims(r: Results, lab_report: report.LabReport) -> report.LabReport:
    """The sweep's largest, smallest and narrow GEMMs and its crossover (kernel time), PyTorch's per-call
    set-up, CUTLASS, the digits models' layers, and zeros alone."""
    claims = r.texts
    if r.sparse_runs:
        _gpu_speed_claims(r, lab_report)
    else:
        for key in SPEED_KEYS:
            lab_report.not_applicable(claims[key], "no semi-structured backend runs on this GPU" if r.has_sparse else
                                      "semi-structured sparse kernels need an NVIDIA GPU of compute capability 8.0+")
    zeros = r.zeros_cmp
    lab_report.check_comparison(claims["zeros"], zeros, threshold=1.05, above=False,
                                why=f"{zeros.label_b.split(' dense')[0]}, {'FP16' if r.sparse_runs else 'FP32 CPU'}")
    return lab_report


def tensorrt_claims(r: Results, lab_report: report.LabReport) -> report.LabReport:
    """What TensorRT's build log and inspector say of SPARSE_WEIGHTS, and the sparse engine's speed."""
    claims = r.texts
    if not r.trt_studies:
        for key in ("trt_eligible", "trt_picked", "trt_speed"):
            lab_report.not_applicable(claims[key], "needs TensorRT (not installed); the same layers were measured as "
                                      "PyTorch GEMMs" if r.sparse_runs else
                                      "needs TensorRT and a GPU with 2:4 sparse tensor cores")
        return lab_report
    narrow_log = r.trt_studies["DigitsCNN(32)"]["engines"]["sparse_weights"]["log"]
    lab_report.check(claims["trt_eligible"], len(narrow_log.eligible), narrow_log.reported and len(narrow_log.eligible) >= 2,
                     fmt="{:.0f} layers", why=narrow_log.summary())
    wide_study = r.trt_studies[f"DigitsCNN({r.wide})"]
    wide_engine = wide_study["engines"]["sparse_weights"]
    picked = len(wide_engine["log"].picked) or sum(layer.sparse_kernel for layer in wide_engine["layers"])
    lab_report.check(claims["trt_picked"], picked, picked > 0, fmt="{:.0f} layers", why=wide_engine["log"].summary())
    lab_report.check_comparison(claims["trt_speed"], wide_study["comparison"], why=f"batch {wide_study['batch']}")
    return lab_report


def claims(r: Results, lab_report: report.LabReport | None = None) -> report.LabReport:
    """All of lab 09's claims, added to `lab_report` (a new one for "09_sparsity" by default)."""
    lab_report = lab_report if lab_report is not None else report.LabReport("09_sparsity")
    for section in (pruning_claims, speed_claims, tensorrt_claims):
        section(r, lab_report)
    return lab_report
