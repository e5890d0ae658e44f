"""``python -m common.advise MODEL.onnx``: every lab's lesson as a check on the learner's own model.

Introduced in lab 12 (your model). The advisor reads an ONNX model without running it (no GPU and no
TensorRT needed), runs the checks of :mod:`common.advise.checks` — one group per lab — and reports
each finding with the nodes it concerns, the expected effect and its evidence: a figure this machine
measured in the course where one is cached, otherwise the rule's documentation source. With
TensorRT installed, ``--build`` adds what the built engine shows.
"""

from __future__ import annotations

from pathlib import Path

from .checks import CHECKS, PRECISIONS, SEVERITIES, Context, Finding, run_checks
from .evidence import Figures, with_ceilings
from .graph import ModelError, ModelGraph, load

__all__ = ["CHECKS", "PRECISIONS", "SEVERITIES", "Context", "Figures", "Finding", "ModelError", "ModelGraph", "with_ceilings",
           "advise", "load"]


def advise(model: str | Path | ModelGraph, *, precision: str = "fp16", batches: tuple[int, ...] = (1,),
           figures: Figures | None = None, build: bool = False) -> list[Finding]:
    """The findings for `model` (a path or an already loaded graph), in lab order."""
    graph = model if isinstance(model, ModelGraph) else load(model)
    ctx = Context(precision=precision, batches=tuple(batches),
                  figures=figures if figures is not None else with_ceilings(Figures.load()))
    findings = run_checks(graph, ctx)
    if build:
        from .engine import engine_findings

        findings += engine_findings(graph, ctx)
        findings.sort(key=lambda f: f.lab)
    return findings
