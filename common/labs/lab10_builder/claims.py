"""Lab 10's claims, one function per section: torch.compile, ONNX Runtime, TensorRT.

Run-time ratios are decided from their 95% interval over interleaved passes (``check_ratio`` /
``check_comparison``): a claim about kernels (fusion, the kernels a search picked, a tactic) on kernel
time where CUPTI measured it, a claim about what a caller waits for on event time. Build and compile
seconds are single measurements, compared as they are.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from common import bench, report

from .kernels_chosen import GENERATED_GEMM, LIBRARY
from .torch_compile import CompileStudy, device_comparison
from .trt_study import DEFAULTS, EngineResult, TensorRTResults

AUTOTUNE = "max-autotune-no-cudagraphs"
COMPILE_CLAIMS = {
    "fusion": "torch.compile (default) runs the CNN faster than eager (BatchNorm + ReLU fused into generated kernels)",
    "library": "PyTorch: torch.compile (default) leaves the MLP's matrix products to the vendor library, as eager "
               "does (by kernel name)",
    "search_cost": "max-autotune-no-cudagraphs compiles the MLP at least 2x longer than default (cold caches)",
    "search_gain": "max-autotune's chosen kernels run the MLP no slower than default's (5% margin)",
    "host_pace": "PyTorch: reduce-overhead (default's kernels as a CUDA graph) runs the MLP faster than default "
                 "(event time): without graphs the host's launches pace default",
}
TRT_CLAIMS = {
    "levels_build": "TensorRT level 5 builds take longer than level 0 (both models)",
    "level0_slow": "TensorRT level 0 engines run slower than level 3 (both models)",
    "levels_flat": "TensorRT levels 4 and 5 run at most 5% faster than level 3 (diminishing returns)",
    "warm": "a warm timing cache builds faster than a cold one (both models)",
    "reuse": "another model's timing cache shortens the related (deeper) MLP's build",
    "editable": "the editable timing cache makes the rebuilt engine run the forced kernel",
    "builder_choice": "the forced tactic runs at most 5% faster than the builder's own choice",
    "avg_timing": "avg_timing_iterations = 8 builds longer than 1",
    "max_tactics": "max_num_tactics = 1 builds faster than TensorRT's default",
    "tiling": "tiling_optimization_level FULL builds longer than NONE",
    "jit": "JIT_CONVOLUTIONS off shortens the CNN's build",
}
NO_TRT = "needs TensorRT (not installed here); torch.compile and ONNX Runtime measured instead"
NO_SECOND_TACTIC = "no op with two or more timed tactics in the VERBOSE build log"
NO_GPU_KERNELS = "a CPU runs no GPU kernels to name (the CPU operators are listed above instead)"
NO_GRAPHS = "reduce-overhead replays CUDA graphs: it needs a GPU"
CPU_TIME = "no kernel time on a CPU: host (perf_counter) time"
SEPARATE_BLOCKS = "the two modes are timed in separate blocks, each interleaved with eager"


def _report(lab_report: report.LabReport | None) -> report.LabReport:
    return lab_report if lab_report is not None else report.LabReport("10_builder")


def _cpu_note(comparison: bench.Comparison) -> str:
    return CPU_TIME if comparison.on != "kernel" else ""


def _gemm_note(default, autotune) -> str:
    """What ran the MLP's matrix products in each mode, with their time per iteration: the measured cause
    of a search that bought a slower kernel (or none)."""
    if default.kernels is None or autotune.kernels is None or default.kernels.device != "cuda":
        return ""

    def gemm_us(profile) -> float:
        return sum(k["us_per_iter"] for k in profile.kernels if k["kind"] in (LIBRARY, GENERATED_GEMM))

    (kind_d, us_d), (kind_a, us_a) = ((p.gemm_kind(), gemm_us(p)) for p in (default.kernels, autotune.kernels))
    head = f"GEMMs: default {kind_d} {us_d:.0f} us/iter, max-autotune {kind_a} {us_a:.0f} us/iter"
    if kind_a != kind_d and us_a > us_d:
        return (head + ": the autotuner kept the candidates its own short benchmark timed fastest, and in the model "
                "they run slower (why its benchmark and the model disagree is not measured here)")
    return head


def compile_claims(studies: Mapping[str, CompileStudy],
                   lab_report: report.LabReport | None = None) -> report.LabReport:
    """torch.compile: what fusion buys the CNN, which kernels run the MLP's GEMMs, what max-autotune's
    search costs and buys, where the host paces default, and what a warm Inductor cache saves.
    `studies` holds "mlp" and "convnet"."""
    lab = _report(lab_report)
    mlp_st, cnn_st = studies["mlp"], studies["convnet"]
    fuse = cnn_st.on_device("eager", "default")
    lab.check_comparison(COMPILE_CLAIMS["fusion"], fuse, threshold=1.0, why=_cpu_note(fuse))
    default = mlp_st.run("default")
    if default.kernels is None or default.kernels.device != "cuda":
        lab.not_applicable(COMPILE_CLAIMS["library"], NO_GPU_KERNELS)
    else:
        kind = default.kernels.gemm_kind()
        lab.check(COMPILE_CLAIMS["library"], default.kernels.share_of(LIBRARY), kind == LIBRARY,
                  fmt="{:.0f}% of its kernel time in library kernels", why=f"GEMMs run by: {kind}")
    autotune = mlp_st.run(AUTOTUNE)
    lab.check(COMPILE_CLAIMS["search_cost"], autotune.cold_s / default.cold_s, autotune.cold_s >= 2 * default.cold_s,
              fmt="{:.1f}x", why=f"{default.cold_s:.1f} s -> {autotune.cold_s:.1f} s")
    gain = mlp_st.on_device("default", AUTOTUNE)
    lab.check_comparison(COMPILE_CLAIMS["search_gain"], gain, threshold=0.95,
                         why="; ".join(t for t in (_gemm_note(default, autotune), _cpu_note(gain), SEPARATE_BLOCKS) if t))
    if any(r.mode == "reduce-overhead" for r in mlp_st.modes):
        graphs = mlp_st.compare("default", "reduce-overhead", on="event")
        lab.check_comparison(COMPILE_CLAIMS["host_pace"], graphs, threshold=1.0, why=SEPARATE_BLOCKS)
    else:
        lab.not_applicable(COMPILE_CLAIMS["host_pace"], NO_GRAPHS)
    for st in studies.values():
        warm_run = st.run("default")
        lab.check(f"a warm Inductor cache compiles the {st.model} at least 2x faster than a cold one (default mode)",
                  warm_run.warm_speedup, warm_run.warm_speedup >= 2, fmt="{:.1f}x",
                  why=f"{warm_run.cold_s:.2f} s -> {warm_run.warm_s:.2f} s")
    warm_runs = [r for st in studies.values() for r in st.modes if r.warm_cache is not None]
    missed = [f"{r.model} {r.mode}" for r in warm_runs
              if r.warm_cache["fx_hits"] + r.warm_cache["aot_hits"] == 0 or r.warm_cache["fx_misses"] > 0]
    lab.check("every warm compile was served from the cache (hits, no FX-graph misses)", float(not missed), not missed,
              fmt="{:.0f}", why=f"missed: {', '.join(missed)}" if missed else f"{len(warm_runs)} warm compiles")
    return lab


def ort_claims(ort_table: Sequence[Mapping[str, Any]], lab_report: report.LabReport | None = None) -> report.LabReport:
    """ONNX Runtime: what its levels buy each model and what they cost to build. `ort_table` holds
    :func:`~.ort_levels.ort_rows` of both models (CPU time: ONNX Runtime runs on the CPU here)."""
    lab = _report(lab_report)
    ort_by = {(row["model"], row["level"]): row for row in ort_table}
    layout = ort_by[("convnet", "ORT_ENABLE_ALL")]
    why = "CPU time, interleaved passes"
    lab.check_ratio("ONNX Runtime ORT_ENABLE_ALL runs the CNN faster than ORT_DISABLE_ALL", layout["speedup"],
                    (layout["speedup_lo"], layout["speedup_hi"]), threshold=1.0, why=why)
    gelu = ort_by[("mlp", "ORT_ENABLE_EXTENDED")]
    lab.check_ratio("ONNX Runtime ORT_ENABLE_EXTENDED (GELU fused) runs the MLP faster than ORT_DISABLE_ALL",
                    gelu["speedup"], (gelu["speedup_lo"], gelu["speedup_hi"]), threshold=1.0, why=why)
    slowest_build_ms = max(row["build_ms"] for row in ort_table)
    lab.check("every ONNX Runtime session builds in under 1 s at every level (its optimization is cheap)",
              slowest_build_ms, slowest_build_ms < 1000, fmt="{:.1f} ms", why="the slowest level's median build")
    lab.check("ORT_ENABLE_ALL's extra build time is paid back within 1,000 CNN inferences", layout["break_even"],
              layout["break_even"] <= 1000, fmt="{:,.0f} inferences",
              why="no speed-up outside the noise: it never pays back" if layout["break_even"] == float("inf") else "")
    return lab


def _level(results: Sequence[EngineResult], value: int) -> EngineResult:
    return next(r for r in results if r.config.builder_optimization_level == value)


def _knob(results: Sequence[EngineResult], name: str, value: Any) -> EngineResult:
    return next(r for r in results if getattr(r.config, name) == value)


def _weakest(comparisons: Mapping[str, bench.Comparison], above: bool) -> tuple[str, bench.Comparison]:
    """The comparison nearest to failing a claim on the `above` side: lowest interval bound (above),
    highest (below); the point value where there is no interval."""
    def bound(item: tuple[str, bench.Comparison]) -> float:
        lo, hi = item[1].interval
        if lo != lo:   # NaN: no interval
            return item[1].speedup if above else -item[1].speedup
        return lo if above else -hi

    return min(comparisons.items(), key=bound)


def tensorrt_claims(results: TensorRTResults | None, lab_report: report.LabReport | None = None) -> report.LabReport:
    """TensorRT: levels, the timing cache cold, warm and reused, the editable timing cache, and the
    tactic knobs' build times; every claim not applicable where `results` is None (no TensorRT).
    Engine run times are judged on kernel time (a tactic is a device effect)."""
    lab = _report(lab_report)
    if results is None:
        for claim in TRT_CLAIMS.values():
            lab.not_applicable(claim, NO_TRT)
        return lab
    names = list(results.levels)
    ratios = {n: _level(results.levels[n], 5).build_s / _level(results.levels[n], 0).build_s for n in names}
    smaller = min(ratios, key=ratios.get)
    lab.check(TRT_CLAIMS["levels_build"], ratios[smaller], ratios[smaller] > 1, fmt="{:.1f}x (smaller of the two)",
              why=f"{smaller}: level 0 {_level(results.levels[smaller], 0).build_s:.1f} s, "
                  f"level 5 {_level(results.levels[smaller], 5).build_s:.1f} s")
    slow = {n: device_comparison(_level(results.levels[n], 3).runs, _level(results.levels[n], 0).runs) for n in names}
    name, weakest = _weakest(slow, above=False)
    lab.check_comparison(TRT_CLAIMS["level0_slow"], weakest, threshold=1.0, above=False,
                         why=f"level 0 against level 3, {name} (the closer of the two)")
    flat = {f"{n}, level {v}": device_comparison(_level(results.levels[n], 3).runs, _level(results.levels[n], v).runs)
            for n in names for v in (4, 5)}
    name, weakest = _weakest(flat, above=False)
    lab.check_comparison(TRT_CLAIMS["levels_flat"], weakest, threshold=1.05, above=False,
                         why=f"{name} against level 3 (the largest gain)")
    warm_ratio = {n: results.cache[n]["cold"].build_s / results.cache[n]["warm"].build_s for n in names}
    smaller = min(warm_ratio, key=warm_ratio.get)
    lab.check(TRT_CLAIMS["warm"], warm_ratio[smaller], warm_ratio[smaller] > 1, fmt="{:.1f}x (smaller of the two)",
              why=f"{smaller}: {results.cache[smaller]['cold'].build_s:.1f} s -> "
                  f"{results.cache[smaller]['warm'].build_s:.1f} s")
    reuse = results.reuse
    reuse_ratio = reuse["empty"].build_s / reuse["reused"].build_s
    lab.check(TRT_CLAIMS["reuse"], reuse_ratio, reuse_ratio > 1, fmt="{:.1f}x",
              why=f"{reuse['donor_entries']} entries reused")
    editable = results.editable
    if editable["forced"] is not None:
        lab.check(TRT_CLAIMS["editable"], float(editable["forced_kernel_in_engine"]),
                  editable["forced_kernel_in_engine"], fmt="{:.0f}", why=editable["tactic"].kernel)
        lab.check_comparison(TRT_CLAIMS["builder_choice"], editable["comparison"], threshold=1.05, above=False,
                             why="forced against chosen")
    else:
        for key in ("editable", "builder_choice"):
            lab.not_applicable(TRT_CLAIMS[key], NO_SECOND_TACTIC)
    # (claim, knob, the value expected to build longer, the value expected to build faster)
    for key, knob, longer, shorter in (("avg_timing", "avg_timing_iterations", 8, 1),
                                       ("tiling", "tiling_optimization_level", "FULL", "NONE"),
                                       ("max_tactics", "max_num_tactics", -1, 1),
                                       ("jit", "tactic_sources", DEFAULTS["tactic_sources"],
                                        frozenset({"EDGE_MASK_CONVOLUTIONS"}))):
        slower, faster = _knob(results.knobs[knob], knob, longer), _knob(results.knobs[knob], knob, shorter)
        ratio = slower.build_s / faster.build_s
        lab.check(TRT_CLAIMS[key], ratio, ratio > 1, fmt="{:.2f}x build time",
                  why=f"{faster.build_s:.1f} s -> {slower.build_s:.1f} s")
    return lab


def claims(compile_studies: Mapping[str, CompileStudy], ort_table: Sequence[Mapping[str, Any]],
           trt: TensorRTResults | None, lab_report: report.LabReport | None = None) -> report.LabReport:
    """All of lab 10's claims, in the notebook's order: torch.compile, ONNX Runtime, TensorRT."""
    lab = compile_claims(compile_studies, lab_report)
    ort_claims(ort_table, lab)
    return tensorrt_claims(trt, lab)
