"""Claims: what a lab expects, what it measured, and whether the claim holds on this machine.

Introduced in lab 00 (tour). A lab states each finding as a claim with a condition evaluated on the
measured figure; a claim whose experiment cannot run here (no GPU, no TensorRT, no FP8) is "not
applicable here" with the reason. Each lab's claims and the machine they were measured on go to
one JSON file, `results/<lab>/claims.json`.

A claim on a ratio measured over several passes is decided from its 95% interval
(:meth:`LabReport.check_ratio`): it holds only if the threshold lies outside the interval on the
claimed side, does not hold if it lies outside on the other side, and is inconclusive when the
interval straddles it (the noise is larger than the effect). A report displays as an HTML table in
JupyterLab and as plain text in a terminal, nothing cut.
"""

from __future__ import annotations

import html
import json
import math
import textwrap
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from .bench import kernel_pass_cost
from .env import detect, project_root, results_dir
from .files import write_text_atomic

HOLDS, FAILS, NOT_APPLICABLE, INCONCLUSIVE = "holds", "does not hold", "not applicable here", "inconclusive"
#: Every status, in the order summaries count them.
STATUSES = (HOLDS, FAILS, INCONCLUSIVE, NOT_APPLICABLE)
#: Background colour of each status in the HTML table (readable in JupyterLab's light and dark themes).
STATUS_COLOURS = {HOLDS: "#c8e6c9", FAILS: "#ffcdd2", INCONCLUSIVE: "#ffe0b2", NOT_APPLICABLE: "#e0e0e0"}
#: Where the plain-text table wraps its long columns (never cuts them).
WRAP = {"claim": 60, "why": 60}


@dataclass
class Claim:
    claim: str
    measured: str
    status: str
    why: str = ""
    value: float | None = None
    interval: tuple[float, float] | None = None   # the 95% interval a ratio claim was decided on


@dataclass
class LabReport:
    """The claims of one lab, with the machine and backend that produced them."""

    lab: str
    claims: list[Claim] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def check(self, claim: str, value: float, condition: bool, fmt: str = "{:.3g}", why: str = "") -> Claim:
        """Record `claim`, measured as `value`; it holds when `condition` is true."""
        status = HOLDS if condition else FAILS
        c = Claim(claim=claim, measured=fmt.format(value), status=status, why=why, value=float(value))
        return self._add(c)

    def check_ratio(self, claim: str, value: float, interval: tuple[float, float], *, threshold: float,
                    above: bool = True, fmt: str = "{:.2f}x", why: str = "") -> Claim:
        """Record a claim that a ratio lies above (or, with ``above=False``, below) `threshold`,
        decided from its 95% interval over passes (:func:`common.bench.ratio_interval`):

        - holds: the whole interval lies on the claimed side of the threshold;
        - does not hold: the whole interval lies on the other side;
        - inconclusive: the interval holds the threshold (the run-to-run noise hides the effect).

        The measured text shows the ratio with its interval; a claim that does not hold or is
        inconclusive says why in one line (`why`, when given, is kept after it).
        """
        lo, hi = (float(x) for x in interval)
        side = "above" if above else "below"
        shown = f"{fmt.format(value)} [{fmt.format(lo)}, {fmt.format(hi)}]"
        bound = fmt.format(threshold)
        if math.isnan(lo) or math.isnan(hi):
            status, reason = INCONCLUSIVE, f"no interval (fewer than two passes per side) to decide {side} {bound}"
            shown = fmt.format(value)
        elif (lo > threshold) if above else (hi < threshold):
            status, reason = HOLDS, ""
        elif (hi < threshold) if above else (lo > threshold):
            status, reason = FAILS, f"95% interval {fmt.format(lo)}-{fmt.format(hi)} lies {'below' if above else 'above'} {bound}"
        else:
            status, reason = INCONCLUSIVE, (f"95% interval {fmt.format(lo)}-{fmt.format(hi)} straddles {bound}: "
                                            f"the run-to-run noise is larger than the effect")
        text = "; ".join(t for t in (reason, _one_line(why)) if t)
        return self._add(Claim(claim=claim, measured=shown, status=status, why=text, value=float(value),
                               interval=None if math.isnan(lo) or math.isnan(hi) else (lo, hi)))

    def check_comparison(self, claim: str, comparison, *, threshold: float = 1.0, above: bool = True,
                         fmt: str = "{:.2f}x", why: str = "") -> Claim:
        """:meth:`check_ratio` on a :class:`common.bench.Comparison`'s speedup (B over A) and its interval;
        the why says which time it was judged on (event, kernel or host)."""
        on = f"judged on {comparison.on} time over {comparison.passes} passes"
        return self.check_ratio(claim, comparison.speedup, comparison.interval, threshold=threshold, above=above,
                                fmt=fmt, why="; ".join(t for t in (_one_line(why), on) if t))

    def not_applicable(self, claim: str, why: str) -> Claim:
        """Record a claim this machine cannot test, and why (e.g. 'needs TensorRT')."""
        return self._add(Claim(claim=claim, measured="-", status=NOT_APPLICABLE, why=why))

    def _add(self, c: Claim) -> Claim:
        self.claims = [old for old in self.claims if old.claim != c.claim] + [c]
        return c

    def add_figure(self, path) -> None:
        if str(path) not in self.figures:
            self.figures.append(str(path))

    def rows(self) -> list[dict]:
        return [{"claim": c.claim, "measured": c.measured, "status": c.status, "why": c.why} for c in self.claims]

    def counts(self) -> dict[str, int]:
        """How many claims have each status (every status listed, zeros included)."""
        return {status: sum(c.status == status for c in self.claims) for status in STATUSES}

    def unexplained(self) -> list[Claim]:
        """Claims that do not hold or are inconclusive without a why: each of them should say one."""
        return [c for c in self.claims if c.status in (FAILS, INCONCLUSIVE) and not c.why.strip()]

    def table(self) -> str:
        """A plain-text table of the claims (what a terminal or a log shows): long claim and why texts
        wrap onto continuation lines within their column, never cut."""
        cols = ["claim", "measured", "status", "why"]
        cells = [{c: textwrap.wrap(r[c], WRAP[c]) or [""] if c in WRAP else [r[c]] for c in cols} for r in self.rows()]
        widths = {c: max([len(c)] + [len(line) for cell in cells for line in cell[c]]) for c in cols}
        out = [" | ".join(c.ljust(widths[c]) for c in cols).rstrip(), "-+-".join("-" * widths[c] for c in cols)]
        for cell in cells:
            for i in range(max(len(lines) for lines in cell.values())):
                out.append(" | ".join((cell[c][i] if i < len(cell[c]) else "").ljust(widths[c]) for c in cols).rstrip())
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        """IPython's plain-text form: the table, not the dataclass fields."""
        printer.text(self.table())

    def _repr_html_(self) -> str:
        """The claims as an HTML table for JupyterLab: status coloured, full why text, numbers right-aligned."""
        cell = "padding:2px 8px;vertical-align:top;border-bottom:1px solid #ddd;"
        head = "".join(f"<th style='{cell}text-align:{a}'>{h}</th>"
                       for h, a in (("claim", "left"), ("measured", "right"), ("status", "left"), ("why", "left")))
        body = []
        for c in self.claims:
            colour = STATUS_COLOURS.get(c.status, "transparent")
            body.append(
                "<tr>"
                f"<td style='{cell}text-align:left'>{html.escape(c.claim)}</td>"
                f"<td style='{cell}text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums'>"
                f"{html.escape(c.measured)}</td>"
                f"<td style='{cell}text-align:left;white-space:nowrap;background:{colour};color:#000'>"
                f"{html.escape(c.status)}</td>"
                f"<td style='{cell}text-align:left'>{html.escape(c.why)}</td>"
                "</tr>")
        counts = ", ".join(f"{n} {status}" for status, n in self.counts().items() if n)
        return (f"<table class='trtlabs-claims' style='border-collapse:collapse'>"
                f"<caption style='text-align:left'>{html.escape(self.lab)}: {html.escape(counts or 'no claims')}</caption>"
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")

    def save(self) -> str:
        env = detect()
        data = {
            "lab": self.lab,
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "environment": env.as_dict(),
            "claims": [asdict(c) for c in self.claims],
            "figures": self.figures,
            "kernel_time_pass": kernel_pass_cost(),   # what measuring kernel time cost this lab
        }
        path = results_dir(self.lab) / "claims.json"
        write_text_atomic(path, json.dumps(data, indent=1))   # a full disk keeps the old file whole
        try:   # shown relative to the course folder: a notebook's output names no machine's paths
            return str(path.relative_to(project_root()))
        except ValueError:
            return str(path)


def _one_line(text: str) -> str:
    return " ".join(text.split())
