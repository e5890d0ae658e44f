"""Lab 10's arithmetic of build effort: when a build pays back, and how a comparison reads."""

from __future__ import annotations

import math

from common import bench

#: Short names of the torch.compile modes, for figure labels.
SHORT_MODE = {"default": "default", "reduce-overhead": "reduce-overhead", "max-autotune-no-cudagraphs": "max-autotune"}


def break_even_inferences(build_s: float, baseline_ms: float, optimized_ms: float) -> float:
    """How many inferences pay back `build_s` seconds of build: build time over the time saved per
    inference. ``math.inf`` when the optimized run is not faster (the build never pays back)."""
    saved_ms = baseline_ms - optimized_ms
    if saved_ms <= 0:
        return math.inf
    return build_s * 1e3 / saved_ms


def verdict(comparison: bench.Comparison) -> str:
    """"faster", "slower" or "noise" (a difference inside the run-to-run spread)."""
    if not comparison.significant:
        return "noise"
    return "faster" if comparison.speedup > 1 else "slower"
