"""TensorRT's log, recorded: a trt.ILogger that keeps each message so that builds can report
their errors and labs can search the log.

Introduced in lab 01 (batching) for build errors; lab 09 (sparsity) searches it for the
"(Sparsity) ..." lines that say which layers got sparse kernels.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorrt as trt

#: trt.ILogger.Severity names, most severe first (INTERNAL_ERROR = 0 ... VERBOSE = 4).
SEVERITY_RANK = {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4}


@dataclass
class BuildLog:
    """TensorRT's log messages as (severity name, text), searchable after a build (lab 09)."""

    records: list[tuple[str, str]] = field(default_factory=list)

    def add(self, severity: str, text: str) -> None:
        self.records.append((severity, text))

    def lines(self) -> list[str]:
        return [f"[{sev}] {text}" for sev, text in self.records]

    def errors(self) -> list[str]:
        return [text for sev, text in self.records if SEVERITY_RANK.get(sev, 9) <= 1]

    def search(self, pattern: str) -> list[str]:
        """Messages matching the regular expression `pattern`, e.g. r"\\(Sparsity\\)"."""
        rx = re.compile(pattern)
        return [text for _, text in self.records if rx.search(text)]


def make_logger(log: BuildLog, *, verbose: bool = False) -> "trt.ILogger":
    """A trt.ILogger that records INFO and worse (VERBOSE too when `verbose`) into `log`.

    Warnings and errors also go to stderr, as TensorRT's own Logger(WARNING) would print them.
    """
    import tensorrt as trt

    names = {trt.ILogger.INTERNAL_ERROR: "INTERNAL_ERROR", trt.ILogger.ERROR: "ERROR",
             trt.ILogger.WARNING: "WARNING", trt.ILogger.INFO: "INFO", trt.ILogger.VERBOSE: "VERBOSE"}
    keep_rank = SEVERITY_RANK["VERBOSE" if verbose else "INFO"]

    class _RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # pybind11 trampolines need the base __init__ called explicitly

        def log(self, severity: "trt.ILogger.Severity", msg: str) -> None:
            name = names.get(severity, str(severity))
            rank = SEVERITY_RANK.get(name, 4)
            if rank <= keep_rank:
                log.add(name, msg)
            if rank <= SEVERITY_RANK["WARNING"]:
                print(f"[TensorRT {name}] {msg}", file=sys.stderr)

    return _RecordingLogger()
