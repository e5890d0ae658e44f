"""Lab 12 (your model): the advisor on the course's own models and on a model with planted problems.

The capstone runs :mod:`common.advise` — every lab's lesson as a check on an ONNX graph — on the
course's CNN and transformer block and on a small network built here with one problem planted per
lab, and states as claims that every planted problem is found and that its clean twin raises none of
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from common import models, report
from common import onnx as onnx_tools
from common.advise import Finding

#: What each planted problem must make the advisor say: (lab, check).
PLANTED = {
    "misaligned Linear (K = 1001)": ("07_matmul_tensor_cores", "misaligned-matmul"),
    "hand-written LayerNorm": ("05_fusion", "hand-written-layernorm"),
    "transpose and its inverse": ("05_fusion", "transpose-pair"),
    "sum over the channel axis": ("06_reduce_shuffle", "reduce-non-trailing"),
    "fixed batch of 4": ("01_batching", "dynamic-batch"),
}


class _HandLayerNorm(nn.Module):
    """LayerNorm spelled out as the seed notes' models often have it: mean, centre, square, mean, sqrt."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        centred = x - mean
        return centred / torch.sqrt((centred ** 2).mean(-1, keepdim=True) + 1e-5)


class PlantedNet(nn.Module):
    """A small network with one problem per lab planted (`clean=True`: the same network without them)."""

    def __init__(self, clean: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.clean = clean
        width = 1024 if clean else 1001
        self.proj = nn.Linear(64, width)
        self.out = nn.Linear(width, 64)
        self.norm = nn.LayerNorm(width) if clean else _HandLayerNorm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # x: (batch, channels 16, tokens 64)
        y = self.out(torch.relu(self.norm(self.proj(x))))     # (batch, 16, 64)
        return y.mean(-1) if self.clean else y.sum(1)        # reduce over the last axis, or over channels


def plant_transpose_pair(path: Path) -> Path:
    """Insert a transpose and its inverse after the graph's input (the exporter folds one written in
    PyTorch away, as a graph written by hand or by another converter often keeps it)."""
    model = onnx.load(str(path))
    graph = model.graph
    source = graph.input[0].name
    for node in graph.node:
        node.input[:] = ["planted_back" if name == source else name for name in node.input]
    pair = [onnx.helper.make_node("Transpose", [source], ["planted_swap"], perm=[0, 2, 1], name="planted_swap"),
            onnx.helper.make_node("Transpose", ["planted_swap"], ["planted_back"], perm=[0, 2, 1], name="planted_back")]
    nodes = pair + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(onnx_tools.portable(model), str(path))
    return path


def export_planted(out_dir: Path, clean: bool) -> Path:
    """The planted network (or its clean twin) as ONNX; the planted one with a fixed batch of 4."""
    name = "clean" if clean else "planted"
    model = PlantedNet(clean=clean).eval()
    path = onnx_tools.export(model, torch.randn(4, 16, 64), Path(out_dir) / f"{name}.onnx", dynamic_batch=clean)
    return path if clean else plant_transpose_pair(path)


def export_course_models(out_dir: Path, scale) -> dict[str, Path]:
    """Lab 01's CNN and transformer block, exported as lab 01 does (FP32, dynamic batch)."""
    paths = {}
    for name in ("resnet50", "transformer"):
        model = models.build(name, scale)
        paths[name] = onnx_tools.export(model, models.example_input(name, 2, scale), Path(out_dir) / f"{name}.onnx")
    return paths


def found(findings: list[Finding]) -> set[tuple[str, str]]:
    """(lab, check) of every finding that is more than a note: advice or a warning, or a reduce axis."""
    return {(f.lab, f.check) for f in findings
            if f.severity != "info" or f.check in ("transpose-pair", "reduce-non-trailing")}


@dataclass
class Results:
    planted: list[Finding]
    clean: list[Finding]


def claims(results: Results, lab_report: report.LabReport | None = None) -> report.LabReport:
    """Every planted problem is found in the planted network and absent from its clean twin."""
    lab_report = lab_report or report.LabReport("12_your_model")
    in_planted, in_clean = found(results.planted), found(results.clean)
    missed = [problem for problem, key in PLANTED.items() if key not in in_planted]
    lab_report.check("the advisor finds every planted problem", len(PLANTED) - len(missed), not missed,
                     fmt="{:.0f} of %d" % len(PLANTED), why="missed: " + ", ".join(missed) if missed else "")
    false_alarms = [problem for problem, key in PLANTED.items() if key in in_clean]
    lab_report.check("the clean twin raises none of the planted problems", len(false_alarms), not false_alarms,
                     fmt="{:.0f} false alarms", why=", ".join(false_alarms))
    return lab_report


def findings_by_lab(findings: list[Finding]) -> dict[str, list[str]]:
    """Lab -> the checks that fired there (what the notebook points the reader to)."""
    labs: dict[str, list[str]] = {}
    for f in findings:
        labs.setdefault(f.lab, [])
        if f.check not in labs[f.lab]:
            labs[f.lab].append(f.check)
    return labs
