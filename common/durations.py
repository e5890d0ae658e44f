"""How long each lab took, per machine and scale: what the workshop planner of `common.execute` reads.

Introduced with `make report` (README). A duration is kept under the machine that produced it (the GPU's
name, or "cpu, N cores") and the scale it ran at, so a 2-core CPU at small scale is never planned with
an H100's full-scale times. The committed record, `docs/durations.json`, holds the runs whose outputs
are committed; every run also records into the cache folder, this machine's own record, which wins
where both have a lab. For a machine with no record the planner estimates from the nearest one it has
(same kind of machine, same scale) and says that it is estimating.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from .env import Environment, cache_dir, detect, project_root
from .files import read_json, write_text_atomic

COMMITTED = project_root() / "docs" / "durations.json"
FILE_NAME = "durations.json"


def machine_key(env: Environment | None = None) -> str:
    """The name durations are recorded under: the GPU's name, or "cpu, N cores"."""
    env = env or detect()
    return str(env.gpu_name) if env.has_gpu else f"cpu, {env.cpu_count} cores"


def local_file() -> Path:
    return cache_dir() / FILE_NAME


def load(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """{machine: {scale: {lab: seconds}}} from `path`; a missing file is empty, a corrupt one is
    empty with a warning (a planner never stops a run for it)."""
    data, problem = read_json(path)
    if problem is None:
        return {}
    if not problem:
        try:
            return {str(m): {str(s): {str(lab): float(t) for lab, t in labs.items()} for s, labs in scales.items()}
                    for m, scales in data.items()}
        except (ValueError, TypeError, AttributeError) as exc:   # JSON, but not a record of durations
            problem = f"{type(exc).__name__}: {exc}"
    print(f"warning: recorded durations in {path} cannot be read ({problem}); ignoring them", file=sys.stderr)
    return {}


def record(path: Path, machine: str, scale: str, seconds: dict[str, float]) -> None:
    """Merge `seconds` ({lab: seconds}) into the record at `path`, written atomically."""
    data = load(path)
    data.setdefault(machine, {}).setdefault(str(scale), {}).update({k: round(v, 1) for k, v in seconds.items()})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def records(paths: tuple[Path, ...] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """The committed record merged with this machine's own (later paths win, lab by lab)."""
    merged: dict[str, dict[str, dict[str, float]]] = {}
    for path in paths if paths is not None else (COMMITTED, local_file()):
        for machine, scales in load(path).items():
            for scale, labs in scales.items():
                merged.setdefault(machine, {}).setdefault(scale, {}).update(labs)
    return merged


@dataclass(frozen=True)
class Estimate:
    """Expected seconds per lab (by notebook stem), and where they come from."""

    seconds: dict[str, float]
    machine: str | None     # the machine whose record is used (None: no record at all)
    scale: str | None
    exact: bool             # recorded on this very machine at this scale
    note: str


def _cores(machine: str) -> int | None:
    if not machine.startswith("cpu, "):
        return None
    digits = "".join(ch for ch in machine[5:] if ch.isdigit())
    return int(digits) if digits else None


def estimate(machine: str, scale: str, recs: dict | None = None) -> Estimate:
    """The durations to plan `machine` at `scale` with: its own record, else the nearest one."""
    recs = records() if recs is None else recs
    scale = str(scale)
    own = recs.get(machine, {}).get(scale)
    if own:
        return Estimate(dict(own), machine, scale, True,
                        f"durations recorded on this machine ({machine}) at {scale} scale")
    cpu = machine.startswith("cpu, ")
    candidates = [(m, s, labs) for m, scales in recs.items() for s, labs in scales.items() if labs]
    if not candidates:
        return Estimate({}, None, None, False, f"no durations recorded on any machine: nothing to plan "
                                               f"{machine} with, so every lab is planned and only the budget's "
                                               "clock stops cells")

    def distance(candidate) -> tuple:
        m, s, labs = candidate
        cores, mine = _cores(m), _cores(machine)
        core_gap = abs(cores - mine) if cores is not None and mine is not None else 0
        return (s != scale, m.startswith("cpu, ") != cpu, core_gap, -len(labs), m)

    m, s, labs = min(candidates, key=distance)
    return Estimate(dict(labs), m, s, False,
                    f"no durations recorded for {machine} at {scale} scale: estimating from {m} at {s} scale "
                    "(an unknown machine: its times may differ a lot)")
