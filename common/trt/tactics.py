"""The timing cache and the tactics in it: its file per TensorRT and GPU, its entries, the autotuning
log of an editable-timing-cache build, and a tactic forced into the cache.

Introduced in lab 10 (builder optimization). The editable timing cache
(``BuilderFlag.EDITABLE_TIMING_CACHE``) works from the build log: with the flag and a VERBOSE logger,
TensorRT prints for each op it autotunes its timing-cache key, the table of tactics it timed and the
one it selected (format of NVIDIA's ``sampleEditableTimingCache``):

    Autotuning op matMul1(key: 0x1814870c44ff0f8574df6e3dda04cbd7):
    Sorted table of all evaluated tactics:
    tactic_id, cost(in ms), cost/fastest_cost, prediction_correlation, kernel_name, tactic_hash, tunable_parameter
       3, 0.0112640, 1.00000, 0.50673, <kernel name>, 0x665ded9abbf88,
    The selected tactic is (tactic hash, cost(in ms)):0x665ded9abbf88,  0.011264

:func:`parse_autotuning_log` reads that (pure Python, tested without TensorRT); :func:`force_tactic`
writes another tactic for a key into the cache with ``ITimingCache.update``; the next build with the
same flags takes it from the cache instead of timing the op.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from common import env

from .logger import BuildLog, make_logger

if TYPE_CHECKING:
    import tensorrt as trt


# -- the timing-cache file ----------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def timing_cache_file(directory: str | Path, name: str, trt_version: str, gpu_name: str) -> Path:
    """Where the timing cache `name` lives for this TensorRT and GPU.

    TensorRT refuses a timing cache written by another TensorRT version or device (``set_timing_cache``
    returns False, and ``common.trt.build`` then starts an empty one with a warning); naming the file
    after both keeps one valid cache per combination instead of throwing one away at every switch.
    """
    return Path(directory) / f"{_slug(name)}.trt-{_slug(trt_version)}.{_slug(gpu_name)}.timing-cache"


def _timing_cache(data: bytes) -> tuple["trt.IBuilderConfig", "trt.ITimingCache", Any]:
    """An ITimingCache holding `data`, with the builder config that owns it (keep both referenced)."""
    import tensorrt as trt

    logger = make_logger(BuildLog())
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    cache = config.create_timing_cache(data)
    if cache is None:
        raise RuntimeError("TensorRT could not read the timing cache (written by another TensorRT version?)")
    return config, cache, (builder, logger)


def timing_cache_entries(path: str | Path) -> int:
    """How many entries (keys) the timing cache file at `path` holds; 0 when there is no file."""
    env.require("tensorrt")
    path = Path(path)
    if not path.is_file():
        return 0
    _config, cache, _keep = _timing_cache(path.read_bytes())
    return len(cache.queryKeys())


def force_tactic(path: str | Path, key: str, tactic_hash: str, timing_ms: float = 1.0) -> None:
    """Write `tactic_hash` as the choice for the timing-cache `key` (both as printed in the build log,
    "0x..."); the next build that loads the file with the same flags uses it without timing."""
    import tensorrt as trt

    env.require("tensorrt")
    path = Path(path)
    _config, cache, _keep = _timing_cache(path.read_bytes())
    value = trt.TimingCacheValue(int(tactic_hash, 16), timing_ms)
    if not cache.update(trt.TimingCacheKey.parse(key), value):
        raise RuntimeError(f"TensorRT refused to update timing-cache key {key}; was the cache built with "
                           "EDITABLE_TIMING_CACHE?")
    path.write_bytes(bytes(memoryview(cache.serialize())))


# -- the autotuning log ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tactic:
    hash: str          # "0x...", as the log prints it
    kernel: str
    cost_ms: float


@dataclass
class AutotuneRecord:
    """One op the builder autotuned: its timing-cache key, the tactics it timed, the one it chose."""

    op: str
    key: str
    tactics: list[Tactic] = field(default_factory=list)
    selected: str = ""

    @property
    def selected_tactic(self) -> Tactic | None:
        return next((t for t in self.tactics if t.hash == self.selected), None)

    def alternative(self) -> Tactic | None:
        """The fastest timed tactic that is not the selected one (None when there is no other)."""
        others = [t for t in self.tactics if t.hash != self.selected]
        return min(others, key=lambda t: t.cost_ms) if others else None


#: A made-up excerpt in the format TensorRT prints with EDITABLE_TIMING_CACHE and a VERBOSE logger
#: (one message may hold several lines). In the second op the selected tactic is not the first row.
EXAMPLE_AUTOTUNING_LOG = (
    "Autotuning op gemm_0(key: 0x00112233445566778899aabbccddeeff):",
    "Sorted table of all evaluated tactics:",
    "tactic_id, cost(in ms), cost/fastest_cost, prediction_correlation, kernel_name, tactic_hash, tunable_parameter",
    "   2, 0.0100, 1.000, 0.5, kernel_alpha, 0x1a2b,",
    "   7, 0.0125, 1.250, 0.5, kernel_beta, 0x3c4d,",
    "The selected tactic is (tactic hash, cost(in ms)):0x1a2b,  0.0100",
    "Writing the best tactic (0x1a2b) to cache",
    "Autotuning op gemm_1(key: 0xffeeddccbbaa99887766554433221100):\nSorted table of all evaluated tactics:\n"
    "tactic_id, cost(in ms), cost/fastest_cost, prediction_correlation, kernel_name, tactic_hash, tunable_parameter\n"
    "   4, 0.0200, 1.000, 0.5, kernel_gamma, 0x5e6f,\n   9, 0.0210, 1.050, 0.5, kernel_delta, 0x7a8b,",
    "The selected tactic is (tactic hash, cost(in ms)):0x7a8b,  0.0210",
)

_OP_KEY = re.compile(r"Autotuning op (?P<op>[^(]+)\(key: (?P<key>0x[0-9a-fA-F]+)\)")
_HEADER = "tactic_id, cost(in ms), cost/fastest_cost"
_SELECTED = re.compile(r"\(tactic hash, cost\(in ms\)\):\s*(?P<hash>0x[0-9a-fA-F]+)")


def _tactic_row(line: str) -> Tactic | None:
    """`id, cost, ratio, correlation, kernel, hash, ...` -> Tactic, or None when the line is not one."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) < 6 or not fields[0].isdigit() or not fields[5].startswith("0x"):
        return None
    try:
        cost_ms = float(fields[1])
    except ValueError:
        return None
    return Tactic(fields[5], fields[4], cost_ms)


def parse_autotuning_log(lines: Iterable[str]) -> list[AutotuneRecord]:
    """The autotuning records of a VERBOSE build log (messages may hold several lines each).

    A small state machine, as in NVIDIA's sample: a key line opens a record, the header starts its
    table, table rows follow, and the "selected tactic" line closes it.
    """
    records: list[AutotuneRecord] = []
    current: AutotuneRecord | None = None
    in_table = False
    for message in lines:
        for line in str(message).splitlines():
            opened = _OP_KEY.search(line)
            if opened:
                current, in_table = AutotuneRecord(opened["op"].strip(), opened["key"]), False
                continue
            if current is None:
                continue
            if _HEADER in line:
                in_table = True
                continue
            chosen = _SELECTED.search(line)
            if chosen:
                current.selected = chosen["hash"]
                records.append(current)
                current, in_table = None, False
                continue
            if in_table:
                tactic = _tactic_row(line)
                if tactic is not None:
                    current.tactics.append(tactic)
                else:
                    in_table = False
    return records
