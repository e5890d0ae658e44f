"""Claims: what a lab expects, what it measured, and whether the claim holds on this machine.

Introduced in lab 00 (tour). A lab states each finding as a claim with a condition evaluated on the
measured figure; a claim whose experiment cannot run here (no GPU, no TensorRT, no FP8) is "not
applicable here" with the reason. Each lab's claims and the machine they were measured on go to
one JSON file, `results/<lab>/claims.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from .env import detect, project_root, results_dir
from .files import write_text_atomic

HOLDS, FAILS, NOT_APPLICABLE = "holds", "does not hold", "not applicable here"


@dataclass
class Claim:
    claim: str
    measured: str
    status: str
    why: str = ""
    value: float | None = None


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

    def table(self) -> str:
        """A plain-text table of the claims (what the notebook prints)."""
        rows = self.rows()
        cols = ["claim", "measured", "status", "why"]
        widths = {c: min(100 if c == "claim" else 48, max([len(c)] + [len(r[c]) for r in rows])) for c in cols}
        line = " | ".join(c.ljust(widths[c]) for c in cols)
        out = [line, "-+-".join("-" * widths[c] for c in cols)]
        for r in rows:
            out.append(" | ".join(r[c][: widths[c]].ljust(widths[c]) for c in cols))
        return "\n".join(out)

    def save(self) -> str:
        env = detect()
        data = {
            "lab": self.lab,
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "environment": env.as_dict(),
            "claims": [asdict(c) for c in self.claims],
            "figures": self.figures,
        }
        path = results_dir(self.lab) / "claims.json"
        write_text_atomic(path, json.dumps(data, indent=1))   # a full disk keeps the old file whole
        try:   # shown relative to the course folder: a notebook's output names no machine's paths
            return str(path.relative_to(project_root()))
        except ValueError:
            return str(path)
