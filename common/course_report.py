"""One HTML file with every executed lab's claims and figures, for an instructor to hand out.

Introduced with `make report` (README). `write_report(out_dir)` reads what `common.execute` left in
`out_dir`: the executed notebooks (`notebooks/`), each lab's claims and figures (`results/<lab>/`)
and the run's durations (`timings.json`), and writes `out_dir/report.html`: a header with the
machine and versions, a summary of every lab's claims, then one section per lab with its claims
table (holds / does not hold / not applicable, and why) and its figures embedded as PNG.
The file is self-contained: no scripts, no links outside it.
"""

from __future__ import annotations

import base64
import html
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from .report import FAILS, HOLDS, NOT_APPLICABLE

STATUS_CLASS = {HOLDS: "holds", FAILS: "fails", NOT_APPLICABLE: "na"}
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;width:100%;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;white-space:nowrap}
.holds{color:#176f2c;font-weight:600} .fails{color:#a61b1b;font-weight:600} .na{color:#666}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555} .meta{color:#555;font-size:.9em}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto}
"""


def _lab_title(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    first = next((c for c in cells if c["cell_type"] == "markdown"), None)
    if first is None:
        return notebook.stem
    text = first["source"] if isinstance(first["source"], str) else "".join(first["source"])
    return text.splitlines()[0].lstrip("# ").strip()


def _claims(results: Path, lab: str) -> dict | None:
    path = results / lab / "claims.json"
    return json.loads(path.read_text()) if path.exists() else None


def _figure(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(png.name)}</figcaption></figure>")


def _claims_table(claims: list[dict]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c['claim'])}</td><td class=num>{html.escape(c['measured'])}</td>"
        f"<td class={STATUS_CLASS.get(c['status'], '')}>{html.escape(c['status'])}</td>"
        f"<td>{html.escape(c.get('why') or '')}</td></tr>"
        for c in claims)
    return f"<table><tr><th>claim</th><th>measured</th><th>status</th><th>why</th></tr>{rows}</table>"


def _counts(claims: list[dict]) -> dict[str, int]:
    return {s: sum(c["status"] == s for c in claims) for s in (HOLDS, FAILS, NOT_APPLICABLE)}


def _machine_block(environment: dict) -> str:
    keys = [("machine", "machine"), ("backend", "backend"), ("driver", "driver"), ("CUDA", "cuda_runtime"),
            ("python", "python"), ("PyTorch", "torch"), ("TensorRT", "tensorrt"),
            ("ONNX Runtime", "onnxruntime"), ("ONNX", "onnx")]
    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(environment.get(v) or 'not installed'))}</td></tr>"
                   for k, v in keys)
    return f"<table>{rows}</table>"


def build_html(out_dir: Path, notebooks_dir: Path | None = None, results: Path | None = None) -> str:
    """The report's HTML for the run in `out_dir` (notebooks in `out_dir/notebooks`, results in
    `out_dir/results`, unless a run with --inplace kept them in labs/ and results/)."""
    out_dir = Path(out_dir)
    notebooks_dir = Path(notebooks_dir or out_dir / "notebooks")
    notebooks = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no executed notebooks in {notebooks_dir}: run "
                                "`python -m common.execute --out DIR` (or `make report`) first")
    results = Path(results or out_dir / "results")
    timings_path = out_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    lab_seconds = timings.get("labs", {})

    sections, summary_rows, environment = [], [], {}
    for nb in notebooks:
        lab, title = nb.stem, _lab_title(nb)
        data = _claims(results, lab)
        claims = data["claims"] if data else []
        environment = environment or (data or {}).get("environment", {})
        counts = _counts(claims)
        seconds = lab_seconds.get(nb.name)
        took = f"{seconds:.0f} s" if isinstance(seconds, (int, float)) else "failed"
        summary_rows.append(
            f'<tr><td><a href="#{lab}">{html.escape(title)}</a></td><td class=num>{took}</td>'
            f"<td class='num holds'>{counts[HOLDS]}</td><td class='num fails'>{counts[FAILS]}</td>"
            f"<td class='num na'>{counts[NOT_APPLICABLE]}</td></tr>")
        figures = sorted((results / lab).glob("*.png")) if (results / lab).exists() else []
        body = _claims_table(claims) if claims else "<p>No claims were recorded: the lab did not finish.</p>"
        backend = (data or {}).get("environment", {}).get("backend", "")
        sections.append(
            f'<section id="{lab}"><h2>{html.escape(title)}</h2>'
            f'<p class=meta>notebook <code>{html.escape(nb.name)}</code> · ran in {took}'
            f"{' · backend ' + html.escape(backend) if backend else ''}</p>"
            f"{body}{''.join(_figure(p) for p in figures)}</section>")

    skipped = timings.get("skipped", [])
    skipped_html = ("<p><b>Skipped:</b></p><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped)
                    + "</ul>") if skipped else ""
    total = timings.get("total_seconds")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>TensorRT Performance Labs — results</title><style>{STYLE}</style></head><body>"
        "<h1>TensorRT Performance Labs — results</h1>"
        f"<p class=meta>generated {generated}"
        f"{f' · {len(notebooks)} labs in {total:.0f} s' if isinstance(total, (int, float)) else ''}"
        f" · scale {html.escape(str(timings.get('scale', 'auto')))}</p>"
        f"<h2>Machine</h2>{_machine_block(environment)}"
        "<h2>Summary</h2><table><tr><th>lab</th><th>ran in</th><th>holds</th><th>does not hold</th>"
        f"<th>not applicable here</th></tr>{''.join(summary_rows)}</table>{skipped_html}"
        f"{''.join(sections)}</body></html>")


def write_report(out_dir: Path, notebooks_dir: Path | None = None, results: Path | None = None) -> Path:
    path = Path(out_dir) / "report.html"
    path.write_text(build_html(out_dir, notebooks_dir, results), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_report(Path(sys.argv[1] if len(sys.argv) > 1 else "report")))
