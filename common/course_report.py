"""One HTML file with every executed lab's claims and figures, for an instructor to hand out.

Introduced with `make report` (README). `write_report(out_dir)` reads what `common.execute` left in
`out_dir`: the run's record (`timings.json`: each lab's status, duration, error), the executed
notebooks (`notebooks/`) and each lab's claims and figures (`results/<lab>/`), and writes
`out_dir/report.html`: a header that says in a sentence which backend produced the results and what
did not run and why, the machine and versions, a summary of every lab, then one section per lab with
its claims table (holds / does not hold / not applicable, and why) and its figures, captioned with
what they show, in the order the lab drew them. A lab that failed is listed with its error; claims
written before this run started, or a claims file that cannot be read, are never shown as this
run's. The file is self-contained: no scripts, no links outside it.
"""

from __future__ import annotations

import base64
import html
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .files import read_json, write_text_atomic
from .report import FAILS, HOLDS, INCONCLUSIVE, NOT_APPLICABLE

STATUS_CLASS = {HOLDS: "holds", FAILS: "fails", INCONCLUSIVE: "inconclusive", NOT_APPLICABLE: "na"}
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;width:100%;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right;white-space:nowrap}
.holds{color:#176f2c;font-weight:600} .fails{color:#a61b1b;font-weight:600} .na{color:#666}
.inconclusive{color:#8a5a00;font-weight:600}
figure{margin:1.5em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.3em} .meta{color:#555;font-size:.9em}
.lead{font-size:1.05em} .warn{background:#fff4e5;border-left:4px solid #e69500;padding:.5em .8em}
.failed{background:#fdecec;border-left:4px solid #a61b1b;padding:.5em .8em}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;white-space:pre-wrap}
"""


@dataclass
class LabEntry:
    """One lab of the run, as the report shows it."""

    lab: str                   # the notebook's stem, e.g. "01_batching"
    status: str                # "ran", "failed", "interrupted"
    seconds: float | None
    notebook: Path | None
    error: str = ""
    cell: int | None = None


def _warn(message: str) -> str:
    """Say `message` on stderr (every time: each lab's problem is its own) and return it for the page."""
    print(f"warning: {message}", file=sys.stderr)
    return message


def _shown(path: Path | None, out_dir: Path) -> str:
    if path is None:
        return ""
    try:
        return str(path.relative_to(out_dir))
    except ValueError:
        return path.name


def _read_json(path: Path, what: str) -> tuple[dict | None, str]:
    """(data, "") or (None, why not); a missing file is (None, "")."""
    data, problem = read_json(path)
    if problem is None:
        return None, ""
    if problem:
        return None, _warn(f"{what} ({path.name}) cannot be read ({problem}); it is left out")
    if not isinstance(data, dict):
        return None, _warn(f"{what} ({path.name}) holds no record (a {type(data).__name__}); it is left out")
    return data, ""


def _lab_title(notebook: Path | None, lab: str) -> str:
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"] if notebook else []
    except (OSError, ValueError, KeyError):
        return lab
    first = next((c for c in cells if c.get("cell_type") == "markdown"), None)
    if first is None:
        return lab
    text = first["source"] if isinstance(first["source"], str) else "".join(first["source"])
    return (text.splitlines() or [lab])[0].lstrip("# ").strip() or lab


def _claims(results: Path, lab: str, since: str | None) -> tuple[dict | None, str]:
    """This run's claims of `lab` and, when there are none to show, why (empty: none recorded)."""
    data, problem = _read_json(results / lab / "claims.json", f"the claims of {lab}")
    if data is None:
        return None, problem
    if not isinstance(data.get("claims"), list):
        return None, _warn(f"the claims of {lab} (claims.json) list no claims; they are left out")
    written = str(data.get("written_at") or "")
    if since and written and written < since:
        return None, _warn(f"the claims of {lab} were written at {written}, before this run started ({since}): "
                           "an earlier run's claims are not shown")
    return data, ""


def _png_text(png: Path) -> dict[str, str]:
    try:
        from PIL import Image

        with Image.open(png) as image:
            return {str(k): str(v) for k, v in getattr(image, "text", {}).items()}
    except Exception:   # not a PNG Pillow reads: the figure keeps a caption from its file name
        return {}


def _figures(folder: Path, listed: list[str]) -> list[Path]:
    """The lab's figures in the order the lab drew them: those its claims name, then by write time."""
    if not folder.is_dir():
        return []
    pngs = list(folder.glob("*.png"))
    order = {Path(name).with_suffix(".png").name: i for i, name in enumerate(listed)}
    return sorted(pngs, key=lambda p: (order.get(p.name, len(order)), p.stat().st_mtime, p.name))


def _figure(png: Path, number: int) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    text = _png_text(png)
    title = text.get("Title") or png.stem.replace("_", " ")
    what = text.get("Description", "")
    caption = f"<b>Figure {number}.</b> {html.escape(title)}" + (f" — {html.escape(what)}." if what else "")
    return (f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _claims_table(claims: list[dict]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(c.get('claim', '')))}</td><td class=num>{html.escape(str(c.get('measured', '')))}</td>"
        f"<td class={STATUS_CLASS.get(str(c.get('status')), '')}>{html.escape(str(c.get('status', '')))}</td>"
        f"<td>{html.escape(str(c.get('why') or ''))}</td></tr>"
        for c in claims)
    return f"<table><tr><th>claim</th><th>measured</th><th>status</th><th>why</th></tr>{rows}</table>"


def _pass_cost(data: dict | None, lab_seconds: float | None) -> str:
    """" · kernel-time pass 2.1 s (6.9%)": what reading kernel time cost the lab (its claims file's
    ``kernel_time_pass``), as a share of the lab's run time; "" where no pass ran."""
    cost = (data or {}).get("kernel_time_pass") or {}
    seconds, passes = cost.get("pass_seconds"), cost.get("passes", 0)
    if not passes or not isinstance(seconds, (int, float)):
        return ""
    share = f" ({100 * seconds / lab_seconds:.1f}%)" if isinstance(lab_seconds, (int, float)) and lab_seconds > 0 else ""
    return f" · kernel-time pass {seconds:.2f} s{share}"


def _counts(claims: list[dict]) -> dict[str, int]:
    return {s: sum(c.get("status") == s for c in claims) for s in (HOLDS, FAILS, INCONCLUSIVE, NOT_APPLICABLE)}


def _machine_block(environment: dict) -> str:
    keys = [("machine", "machine"), ("backend", "backend"), ("driver", "driver"), ("CUDA", "cuda_runtime"),
            ("python", "python"), ("PyTorch", "torch"), ("TensorRT", "tensorrt"),
            ("ONNX Runtime", "onnxruntime"), ("ONNX", "onnx")]
    def shown(key: str) -> str:
        return str(environment.get(key) or "not installed") if key in environment else "not recorded"

    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(shown(v))}</td></tr>" for k, v in keys)
    return f"<table>{rows}</table>"


def _entries(out_dir: Path, notebooks_dir: Path, timings: dict | None) -> list[LabEntry]:
    """The labs of the run, in run order: from its record, else from the notebooks found."""
    labs = (timings or {}).get("labs")
    if isinstance(labs, dict):
        entries = []
        for name, value in labs.items():
            lab = Path(name).stem
            if isinstance(value, dict):   # the record common.execute writes
                where = value.get("notebook")
                notebook = (out_dir / where) if where else notebooks_dir / name
                seconds = value.get("seconds")
                entries.append(LabEntry(lab, str(value.get("status", "failed")), seconds, notebook,
                                        str(value.get("error") or ""), value.get("cell")))
            else:   # an older record: seconds, or None for a failure
                entries.append(LabEntry(lab, "ran" if isinstance(value, (int, float)) else "failed",
                                        value if isinstance(value, (int, float)) else None, notebooks_dir / name))
        return entries
    entries = []
    for nb in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")):
        meta, _ = _read_json(nb, f"the notebook {nb.stem}")
        info = (meta or {}).get("metadata", {}).get("trtlabs", {})
        entries.append(LabEntry(nb.stem, str(info.get("status", "ran")), info.get("seconds"), nb,
                                str(info.get("error") or ""), info.get("cell")))
    return entries


def _not_run(entries: list[LabEntry], skipped: list[str], claims: dict[str, list[dict]]) -> list[str]:
    """What did not run, and why, one line each: failed labs, skipped labs, experiments not applicable."""
    lines = []
    for e in entries:
        if e.status != "ran":
            first = (e.error.strip().splitlines() or ["no error recorded"])[-1]
            where = f" in cell {e.cell}" if e.cell else ""
            lines.append(f"{e.lab} {'was interrupted' if e.status == 'interrupted' else 'failed'}{where}: {first}")
    lines += [f"{s.split(':', 1)[0]} was skipped for time:{s.split(':', 1)[1]}" if ":" in s else s for s in skipped]
    reasons: dict[str, list[str]] = {}
    for lab, cs in claims.items():
        for c in cs:
            if c.get("status") == NOT_APPLICABLE:
                reasons.setdefault(str(c.get("why") or "no reason given"), []).append(f"{lab[:2]}: {c.get('claim')}")
    for why, which in sorted(reasons.items(), key=lambda kv: -len(kv[1])):
        count = f"{len(which)} experiment{'s' if len(which) > 1 else ''}"
        lines.append(f"{count} did not run because {why.rstrip('.')} ({'; '.join(which)})")
    return lines


def _headline(environment: dict, entries: list[LabEntry], n_not_applicable: int, skipped: list[str]) -> str:
    ran = sum(e.status == "ran" for e in entries)
    if environment.get("backend"):
        text = f"Every result below was produced by {environment['backend']} on {environment.get('machine')}; "
    else:
        text = f"No lab recorded the backend it ran on ({environment.get('machine') or 'machine unknown'}); "
    text += f"{ran} of {len(entries)} labs ran to the end"
    bad = [e.lab for e in entries if e.status != "ran"]
    if bad:
        text += f" ({', '.join(bad)} did not)"
    if skipped:
        text += f", {len(skipped)} {'was' if len(skipped) == 1 else 'were'} skipped for time"
    if n_not_applicable:
        text += (f", and {n_not_applicable} experiment{'s' if n_not_applicable > 1 else ''} could not run on this "
                 "machine; the list below says why")
    return html.escape(text + ".")


def build_html(out_dir: Path, notebooks_dir: Path | None = None, results: Path | None = None) -> str:
    """The report's HTML for the run in `out_dir` (notebooks in `out_dir/notebooks`, results in
    `out_dir/results`, unless a run with --inplace kept them in labs/ and results/)."""
    out_dir = Path(out_dir)
    notebooks_dir = Path(notebooks_dir or out_dir / "notebooks")
    results = Path(results or out_dir / "results")
    timings, timings_problem = _read_json(out_dir / "timings.json", "the run's record")
    entries = _entries(out_dir, notebooks_dir, timings)
    if not entries and timings is None:
        raise FileNotFoundError(f"no executed notebooks in {notebooks_dir}: run "
                                "`python -m common.execute --out DIR` (or `make report`) first")
    timings = timings or {}
    since = timings.get("started_at")

    sections, summary_rows, all_claims = [], [], {}
    environment: dict = {}
    for e in entries:
        title = _lab_title(e.notebook, e.lab)
        data, problem = _claims(results, e.lab, since)
        claims = data["claims"] if data else []
        all_claims[e.lab] = claims
        environment = environment or (data or {}).get("environment", {})
        counts = _counts(claims)
        took = f"{e.seconds:.0f} s" if isinstance(e.seconds, (int, float)) and e.status == "ran" else e.status
        summary_rows.append(
            f'<tr><td><a href="#{e.lab}">{html.escape(title)}</a></td><td class=num>{html.escape(took)}</td>'
            f"<td class='num holds'>{counts[HOLDS]}</td><td class='num fails'>{counts[FAILS]}</td>"
            f"<td class='num inconclusive'>{counts[INCONCLUSIVE]}</td><td class='num na'>{counts[NOT_APPLICABLE]}</td></tr>")
        body = ""
        if e.status != "ran":
            where = f" in cell {e.cell}" if e.cell else ""
            name = _shown(e.notebook, out_dir) or f"{e.lab}.ipynb"
            body += (f"<div class=failed><p><b>This lab {'was interrupted' if e.status == 'interrupted' else 'failed'}"
                     f"{where}.</b> The notebook as far as it ran is <code>{html.escape(name)}</code>."
                     f"</p><pre>{html.escape(e.error or 'no error was recorded')}</pre></div>")
        if problem:
            body += f"<p class=warn>{html.escape(problem)}</p>"
        if claims:
            body += _claims_table(claims)
        elif e.status == "ran" and not problem:
            body += "<p>This lab recorded no claims.</p>"
        figures = _figures(results / e.lab, list((data or {}).get("figures") or [])) if data else []
        backend = (data or {}).get("environment", {}).get("backend", "")
        sections.append(
            f'<section id="{e.lab}"><h2>{html.escape(title)}</h2>'
            f'<p class=meta>notebook <code>{html.escape(e.lab)}.ipynb</code> · '
            f"{'ran in ' + took if e.status == 'ran' else html.escape(e.status)}"
            f"{_pass_cost(data, e.seconds if e.status == 'ran' else None)}"
            f"{' · backend ' + html.escape(backend) if backend else ''}</p>"
            f"{body}{''.join(_figure(p, i) for i, p in enumerate(figures, 1))}</section>")

    if not environment and timings.get("machine"):
        environment = {"machine": timings["machine"]}
    skipped = [str(s) for s in timings.get("skipped", [])]
    not_run = _not_run(entries, skipped, all_claims)
    n_na = sum(c.get("status") == NOT_APPLICABLE for cs in all_claims.values() for c in cs)
    not_run_html = ("<h2>What did not run, and why</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in not_run)
                    + "</ul>") if not_run else ""
    total = timings.get("total_seconds")
    interrupted = timings.get("interrupted")
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = "".join(f"<p class=warn>{html.escape(n)}</p>" for n in (
        timings_problem, f"The run was interrupted ({interrupted}); the labs after it did not run." if interrupted else ""
    ) if n)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>TensorRT Performance Labs — results</title><style>{STYLE}</style></head><body>"
        "<h1>TensorRT Performance Labs — results</h1>"
        f"<p class=lead>{_headline(environment, entries, n_na, skipped)}</p>{notes}"
        f"<p class=meta>generated {generated}"
        f"{f' · {len(entries)} labs in {total:.0f} s' if isinstance(total, (int, float)) else ''}"
        f" · scale {html.escape(str(timings.get('scale', 'auto')))}</p>"
        f"<h2>Machine</h2>{_machine_block(environment)}"
        "<h2>Summary</h2><table><tr><th>lab</th><th>ran in</th><th>holds</th><th>does not hold</th>"
        f"<th>inconclusive</th><th>not applicable here</th></tr>{''.join(summary_rows)}</table>{not_run_html}"
        f"{''.join(sections)}</body></html>")


def write_report(out_dir: Path, notebooks_dir: Path | None = None, results: Path | None = None) -> Path:
    path = Path(out_dir) / "report.html"
    write_text_atomic(path, build_html(out_dir, notebooks_dir, results))
    return path


if __name__ == "__main__":
    print(write_report(Path(sys.argv[1] if len(sys.argv) > 1 else "report")))
