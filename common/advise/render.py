"""The advisor's report as text, JSON (the documented schema) or one HTML page."""

from __future__ import annotations

import html
import json
from itertools import groupby

from .checks import Finding

#: The JSON output: {"model": str, "precision": str, "batches": [int], "findings": [Finding]}, where
#: each finding has lab, check, nodes (list of str), detail, severity ("info" | "advice" |
#: "warning"), effect and evidence (all str). Bump when a field changes meaning.
SCHEMA_VERSION = 1
FINDING_FIELDS = ("lab", "check", "nodes", "detail", "severity", "effect", "evidence")
MAX_NODES_SHOWN = 6


def _nodes(nodes: list[str]) -> str:
    shown = ", ".join(nodes[:MAX_NODES_SHOWN])
    more = len(nodes) - MAX_NODES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def as_text(model: str, findings: list[Finding]) -> str:
    lines = [f"Advice for {model}: {len(findings)} findings"]
    for lab, group in groupby(findings, key=lambda f: f.lab):
        lines.append(f"\nlab {lab}")
        for f in group:
            lines.append(f"  [{f.severity}] {f.check}: {f.detail}")
            if f.nodes:
                lines.append(f"      nodes: {_nodes(f.nodes)}")
            lines.append(f"      what to do: {f.effect}")
            lines.append(f"      evidence: {f.evidence}")
    return "\n".join(lines)


def as_json(model: str, precision: str, batches: tuple[int, ...], findings: list[Finding]) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "model": model, "precision": precision,
                       "batches": list(batches), "findings": [f.as_dict() for f in findings]}, indent=1)


def as_html(model: str, findings: list[Finding]) -> str:
    colours = {"info": "#eef3fb", "advice": "#fff6dd", "warning": "#fde2e1"}
    rows = []
    for f in findings:
        cells = (f.lab, f.check, f.severity, f.detail, _nodes(f.nodes), f.effect, f.evidence)
        rows.append(f'<tr style="background:{colours[f.severity]}">'
                    + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("lab", "check", "severity", "detail", "nodes", "what to do", "evidence"))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Advice for {html.escape(model)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}</style></head>"
            f"<body><h1>Advice for {html.escape(model)}</h1><p>{len(findings)} findings, grouped by the lab that "
            f"teaches each lesson.</p><table><tr>{head}</tr>{''.join(rows)}</table></body></html>")
