"""Lab 09 (2:4 structured sparsity): the claims, as functions of what the experiments measured.

Three sections, in the order the claims table lists them: pruning (the pattern, its accuracy cost and
recovery, SparseGPT's masks), speed (the GEMM sweep, the digits models' layers, zeros in a dense
kernel) and TensorRT (``SPARSE_WEIGHTS``). :func:`claims` runs all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common import bench, report

from .gemms import LayerStudy


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
    #: per sweep GEMM: best sparse against best dense (where sparse_runs).
    headline: dict[str, bench.Comparison] = field(default_factory=dict)
    #: per backend: None where it runs, else its error (backend_status()).
    backend_status: dict[str, str | None] = field(default_factory=dict)
    layers: LayerStudy | None = None
    #: per model tag: tensorrt_sparsity_study()'s result; empty where TensorRT did not run.
    trt_studies: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def texts(self) -> dict[str, str]:
        return claim_texts(self.ft_epochs, self.largest, self.smallest, self.wide)


def claim_texts(ft_epochs: int, largest: str, smallest: str, wide: int) -> dict[str, str]:
    """Each claim's sentence, by key."""
    return {
        "pattern": "ModelOpt sparse_magnitude leaves every pruned layer 2:4 along its input channels (own checker)",
        "cost": "2:4 magnitude pruning without fine-tuning costs accuracy (drop larger than one standard error)",
        "recover": f"{ft_epochs} epochs of fine-tuning with the mask kept recover the dense accuracy within 0.5 points",
        "kept": "fine-tuning and mts.export keep the 2:4 pattern",
        "sparsegpt": "ModelOpt SparseGPT's convolution masks are 2:4 along the input channels",
        "largest": f"2:4 sparse is at least 1.15x faster than dense FP16 on the largest GEMM of the sweep ({largest})",
        "smallest": f"2:4 sparse is slower than dense FP16 on the smallest GEMM of the sweep ({smallest})",
        "narrow_n": "2:4 sparse is slower than dense FP16 at 768x3072x8192 (only 768 output features)",
        "cutlass": "PyTorch's CUTLASS 2:4 kernels run on this GPU (the alternative to cuSPARSELt)",
        "layers_narrow": "the trained digits model's pruned convolutions are too small to gain from sparse kernels",
        "layers_wide": f"the wide DigitsCNN({wide})'s pruned convolutions run faster as 2:4 sparse GEMMs (larger layer)",
        "zeros": "a dense kernel gains nothing from 50% zeros (within 5% or the run-to-run spread)",
        "trt_eligible": "TensorRT reports both pruned convolutions of the digits model as eligible for sparse math",
        "trt_picked": f"TensorRT picks a sparse kernel for at least one layer of DigitsCNN({wide})",
        "trt_speed": f"the SPARSE_WEIGHTS engine of DigitsCNN({wide}) is faster than its dense engine",
    }


def _faster(c: bench.Comparison) -> bool:
    return c.significant and c.speedup > 1


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


def _gpu_speed_claims(r: Results, lab_report: report.LabReport) -> None:
    claims = r.texts
    big = r.headline[r.largest]
    lab_report.check(claims["largest"], big.speedup, big.speedup >= 1.15 and big.significant, fmt="{:.2f}x",
                     why=f"best sparse {big.label_b.split(' ', 1)[1]} vs best dense; spread {big.noise_pct:.1f}%")
    small = r.headline[r.smallest]
    lab_report.check(claims["smallest"], small.speedup, small.speedup < 1 and small.significant, fmt="{:.2f}x",
                     why=f"best of each; spread {small.noise_pct:.1f}%")
    if "768x3072x8192" in r.headline:
        n768 = r.headline["768x3072x8192"]
        lab_report.check(claims["narrow_n"], n768.speedup, n768.speedup < 1 and n768.significant, fmt="{:.2f}x",
                         why=f"best of each; spread {n768.noise_pct:.1f}%")
    else:
        lab_report.not_applicable(claims["narrow_n"], "not in this scale's sweep")
    cutlass = r.backend_status["CUTLASS"]
    lab_report.check(claims["cutlass"], float(cutlass is None), cutlass is None, fmt="{:.0f}", why=cutlass or "runs")
    layers = r.layers
    if layers is None:
        raise ValueError("the sparse kernels ran (sparse_runs) but the results carry no layer study")
    narrow_best = [cmp for gemm, cmp in layers.best.items() if gemm.startswith("DigitsCNN(32)")]
    wide_layers = sorted((g for g in layers.best if not g.startswith("DigitsCNN(32)")), key=layers.flops.get)
    if narrow_best:
        lab_report.check(claims["layers_narrow"], max(c.speedup for c in narrow_best),
                         not any(_faster(c) for c in narrow_best), fmt="{:.2f}x (best layer)",
                         why="best sparse vs best dense, per layer")
    else:
        lab_report.not_applicable(claims["layers_narrow"],
                                  f"the sparse backends refused these shapes: {layers.refused.get('DigitsCNN(32)', {})}")
    if wide_layers:
        wide_cmp = layers.best[wide_layers[-1]]
        lab_report.check(claims["layers_wide"], wide_cmp.speedup, _faster(wide_cmp), fmt="{:.2f}x",
                         why=f"{wide_layers[-1]}, batch {r.wide_batch}; spread {wide_cmp.noise_pct:.1f}%")
    else:
        lab_report.not_applicable(claims["layers_wide"], "the sparse backends refused these shapes: "
                                  f"{layers.refused.get(f'DigitsCNN({r.wide})', {})}")


def speed_claims(r: Results, lab_report: report.LabReport) -> report.LabReport:
    """The sweep's largest, smallest and narrow GEMMs, CUTLASS, the digits models' layers, and zeros alone."""
    claims = r.texts
    if r.sparse_runs:
        _gpu_speed_claims(r, lab_report)
    else:
        for key in ("largest", "smallest", "narrow_n", "cutlass", "layers_narrow", "layers_wide"):
            lab_report.not_applicable(claims[key], "no semi-structured backend runs on this GPU" if r.has_sparse else
                                      "semi-structured sparse kernels need an NVIDIA GPU of compute capability 8.0+")
    zeros = r.zeros_cmp
    lab_report.check(claims["zeros"], zeros.speedup, abs(zeros.difference_pct) <= max(5.0, zeros.noise_pct),
                     fmt="{:.2f}x", why=f"{zeros.label_b.split(' dense')[0]}, {'FP16' if r.sparse_runs else 'FP32 CPU'}; "
                                        f"spread {zeros.noise_pct:.1f}%")
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
                     fmt="{:.0f} layers", why=narrow_log.summary()[:48])
    wide_study = r.trt_studies[f"DigitsCNN({r.wide})"]
    wide_engine = wide_study["engines"]["sparse_weights"]
    picked = len(wide_engine["log"].picked) or sum(layer.sparse_kernel for layer in wide_engine["layers"])
    lab_report.check(claims["trt_picked"], picked, picked > 0, fmt="{:.0f} layers", why=wide_engine["log"].summary()[:48])
    cmp = wide_study["comparison"]
    lab_report.check(claims["trt_speed"], cmp.speedup, _faster(cmp), fmt="{:.2f}x",
                     why=f"batch {wide_study['batch']}; spread {cmp.noise_pct:.1f}%")
    return lab_report


def claims(r: Results, lab_report: report.LabReport | None = None) -> report.LabReport:
    """All of lab 09's claims, added to `lab_report` (a new one for "09_sparsity" by default)."""
    lab_report = lab_report if lab_report is not None else report.LabReport("09_sparsity")
    for section in (pruning_claims, speed_claims, tensorrt_claims):
        section(r, lab_report)
    return lab_report
