"""TensorRT's own account of 2:4 sparsity: the build log's "(Sparsity)" lines and the engine inspector.

Introduced in lab 09 (2:4 structured sparsity). With ``BuildConfig(sparse_weights=True)``
(``BuilderFlag.SPARSE_WEIGHTS``) the builder looks for layers whose constant weights follow the 2:4
pattern, times sparse kernels for them beside the dense ones, and keeps a sparse kernel only where it
is faster. Two places say what it did:

- the build log, two INFO messages at the end of the build, one listing the layers whose weights
  qualify and one listing those that got a sparse kernel (the second list may be empty)::

      (Sparsity) Layers eligible for sparse math: conv1, conv2, conv3
      (Sparsity) TRT inference plan picked sparse implementation for layers: conv2, conv3

  ``trtexec`` prints the same messages behind a prefix, ``[03/23/2021-00:14:05] [I] [TRT] (Sparsity) ...``;
- the engine inspector (built with ``profiling_verbosity="detailed"``): a convolution or GEMM layer
  carries ``"HasSparseWeights": 0 or 1`` (its weights qualify) and the chosen kernel's
  ``"TacticName"``; sparse kernels have "sparse" or "sptensor" in their names
  (e.g. ``sm80_xmma_fprop_sparse_conv_..._sptensor16x8x32_...``). A layer with sparse weights can still
  run a dense kernel, so the flag alone does not mean a sparse kernel was picked.

**These formats come from the documentation, not from a run of this course** (TensorRT cannot be
installed where the course is developed): the log lines are the example of the TensorRT Developer
Guide's "Structured Sparsity" section (TensorRT 8.x-10.x; the same lines appear in trtexec logs quoted
in NVIDIA/TensorRT issues #2169 and #4056), the inspector keys come from the trtexec
``--exportLayerInfo`` JSON quoted in NVIDIA/TensorRT issue #4020 (10.x), and the kernel-name markers
from published tactic names. None was confirmed on TensorRT 11 (see
``shared/reference/TENSORRT_11_REFERENCE.md``, sections 8 and 15). So the parsers accept the bare
message and trtexec's prefixed line alike, and a log without any "(Sparsity)" line is reported as
*not reported* rather than as "no sparse layers".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .inspect import EngineInfo, parse_engine_information

ELIGIBLE_MESSAGE = "(Sparsity) Layers eligible for sparse math:"
PICKED_MESSAGE = "(Sparsity) TRT inference plan picked sparse implementation for layers:"

#: The example of the TensorRT Developer Guide ("Structured Sparsity"), as trtexec prints it. A
#: documented format, not a measurement: lab 09 shows it where TensorRT cannot run.
DOCUMENTED_EXAMPLE = (
    "[03/23/2021-00:14:05] [I] [TRT] (Sparsity) Layers eligible for sparse math: conv1, conv2, conv3\n"
    "[03/23/2021-00:14:05] [I] [TRT] (Sparsity) TRT inference plan picked sparse implementation for layers: conv2, conv3"
)

#: Substrings of the names of TensorRT's sparse kernels (tactics), lower case.
SPARSE_KERNEL_MARKERS = ("sparse", "sptensor")

_ELIGIBLE = re.compile(re.escape(ELIGIBLE_MESSAGE) + r"(.*)$")
_PICKED = re.compile(re.escape(PICKED_MESSAGE) + r"(.*)$")


def _layer_names(text: str) -> list[str]:
    """'conv1, conv2 + relu2' -> ['conv1', 'conv2 + relu2'] (fused names keep their ' + ')."""
    return [name.strip() for name in text.split(",") if name.strip()]


@dataclass(frozen=True)
class SparsityLog:
    """What the build log says: layers whose weights qualify, and those that got a sparse kernel."""

    eligible: tuple[str, ...]
    picked: tuple[str, ...]
    reported: bool          # False when the log has no "(Sparsity)" message at all

    @property
    def eligible_not_picked(self) -> tuple[str, ...]:
        """Qualifying layers for which the dense kernel was faster."""
        return tuple(name for name in self.eligible if name not in self.picked)

    def summary(self) -> str:
        if not self.reported:
            return ("the build log has no '(Sparsity)' messages (was the engine built with sparse_weights=True, "
                    "and the log recorded at INFO or VERBOSE?)")
        return (f"eligible for sparse math: {len(self.eligible)} layer(s) {list(self.eligible)}; "
                f"sparse kernel picked: {len(self.picked)} {list(self.picked)}")


def parse_build_log(lines: str | Iterable[str]) -> SparsityLog:
    """Find the two "(Sparsity)" messages in a build log.

    `lines` is the log as one string, or its messages (e.g. the texts of ``BuildLog.records``), with
    or without trtexec's "[date] [I] [TRT] " prefix. Several messages of one kind (one per build
    phase) are merged, in order, without repeats.
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    eligible: list[str] = []
    picked: list[str] = []
    reported = False
    for line in lines:
        for pattern, into in ((_ELIGIBLE, eligible), (_PICKED, picked)):
            match = pattern.search(line)
            if match:
                reported = True
                into.extend(name for name in _layer_names(match.group(1)) if name not in into)
    return SparsityLog(tuple(eligible), tuple(picked), reported)


@dataclass(frozen=True)
class LayerSparsity:
    """One engine layer as the inspector describes it, as far as sparsity goes."""

    name: str
    layer_type: str | None
    has_sparse_weights: bool | None    # None: the inspector gave no HasSparseWeights for this layer
    tactic: str | None

    @property
    def sparse_kernel(self) -> bool:
        """Whether the chosen kernel is a sparse one, judged by its name (see the module docstring)."""
        name = (self.tactic or "").lower()
        return any(marker in name for marker in SPARSE_KERNEL_MARKERS)


def layer_sparsity(info: EngineInfo) -> list[LayerSparsity]:
    """The layers whose inspector entry has a ``HasSparseWeights`` key or a sparse kernel, in engine order."""
    found = []
    for layer in info.layers:
        flag = layer.raw.get("HasSparseWeights")
        entry = LayerSparsity(layer.name, layer.layer_type, None if flag is None else bool(int(flag)), layer.tactic)
        if flag is not None or entry.sparse_kernel:
            found.append(entry)
    return found


def layer_sparsity_from_json(data: str | bytes | Mapping[str, Any]) -> list[LayerSparsity]:
    """:func:`layer_sparsity` straight from engine-inspector (or trtexec ``--exportLayerInfo``) JSON."""
    return layer_sparsity(parse_engine_information(data))
