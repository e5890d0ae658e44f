"""Command line of the advisor: ``python -m common.advise MODEL.onnx [options]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import env
from common.files import write_text_atomic

from . import PRECISIONS, ModelError, advise, load
from .evidence import Figures, with_ceilings
from .render import as_html, as_json, as_text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m common.advise",
                                description="Apply every lab's lesson to an ONNX model: where it applies, on which "
                                            "nodes, and what this machine measured for it.")
    p.add_argument("model", type=Path, help="the ONNX model (external-data weights are read from beside it)")
    p.add_argument("--precision", default="fp16", choices=PRECISIONS, help="the precision you will deploy in")
    p.add_argument("--batch", type=int, nargs="+", default=[1], metavar="N",
                   help="batch sizes you serve (for the profile and the FLOP estimates)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the findings as JSON (schema in render.py)")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write the findings as one HTML page")
    p.add_argument("--measure", action="store_true",
                   help="on a GPU: measure the launch cost and the matrix ceilings now (otherwise cached figures)")
    p.add_argument("--build", action="store_true", help="with TensorRT: build the engine and add what it shows")
    return p


def _measured_figures() -> Figures:
    from common import bench, ceilings

    env.require("gpu")
    import torch

    figures = Figures.load()
    measured = ceilings.get_ceilings()
    figures.matmul_tflops, figures.ceilings_machine = dict(measured.matmul_tflops), measured.machine
    x = torch.zeros(1, device="cuda")
    launches = 100

    def many_launches():
        for _ in range(launches):
            x.add_(1.0)

    m = bench.measure(many_launches, name="100 tiny kernels", backend="PyTorch eager", device="cuda")
    figures.measured_launch_us = m.latency_ms.median * 1e3 / launches
    return figures


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if any(b < 1 for b in args.batch):
        print(f"error: batch sizes must be positive, got {args.batch}", file=sys.stderr)
        return 2
    try:
        graph = load(args.model)
        figures = _measured_figures() if args.measure else with_ceilings(Figures.load())
        findings = advise(graph, precision=args.precision, batches=tuple(args.batch), figures=figures,
                          build=args.build)
    except (ModelError, env.RequirementError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(as_text(args.model.name, findings))
    if args.json:
        write_text_atomic(args.json, as_json(args.model.name, args.precision, tuple(args.batch), findings))
        print(f"\nJSON written to {args.json}")
    if args.html:
        write_text_atomic(args.html, as_html(args.model.name, findings))
        print(f"HTML written to {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
