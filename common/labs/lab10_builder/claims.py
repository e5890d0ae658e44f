"""Lab 10's claims, one function per section: torch.compile, ONNX Runtime, TensorRT."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from common import bench, report

from .torch_compile import CompileStudy
from .trt_study import DEFAULTS, EngineResult, TensorRTResults

TRT_CLAIMS = {
    "levels_build": "TensorRT level 5 builds take longer than level 0 (both models)",
    "level0_slow": "TensorRT level 0 engines run slower than level 3 (both models)",
    "levels_flat": "TensorRT levels 4 and 5 run within 5% (or the noise) of level 3 (diminishing returns)",
    "warm": "a warm timing cache builds faster than a cold one (both models)",
    "reuse": "another model's timing cache shortens the related (deeper) MLP's build",
    "editable": "the editable timing cache makes the rebuilt engine run the forced kernel",
    "builder_choice": "the builder's own tactic is at least as fast as the forced one (or within the noise)",
    "avg_timing": "avg_timing_iterations = 8 builds longer than 1",
    "max_tactics": "max_num_tactics = 1 builds faster than TensorRT's default",
    "tiling": "tiling_optimization_level FULL builds longer than NONE",
    "jit": "JIT_CONVOLUTIONS off shortens the CNN's build",
}
NO_TRT = "needs TensorRT (not installed here); torch.compile and ONNX Runtime measured instead"
NO_SECOND_TACTIC = "no op with two or more timed tactics in the VERBOSE build log"


def _report(lab_report: report.LabReport | None) -> report.LabReport:
    return lab_report if lab_report is not None else report.LabReport("10_builder")


def compile_claims(studies: Mapping[str, CompileStudy],
                   lab_report: report.LabReport | None = None) -> report.LabReport:
    """torch.compile: what fusion buys each model, what max-autotune's search costs and buys the MLP,
    and what a warm Inductor cache saves. `studies` holds "mlp" and "convnet"."""
    lab = _report(lab_report)
    mlp_st, cnn_st = studies["mlp"], studies["convnet"]
    fuse = cnn_st.compare("eager", "default")
    lab.check("torch.compile (default) runs the CNN significantly faster than eager (BatchNorm + ReLU fused)",
              fuse.speedup, fuse.significant and fuse.speedup > 1, fmt="{:.2f}x", why=f"spread {fuse.noise_pct:.1f}%")
    gemm = mlp_st.compare("eager", "default")
    lab.check("torch.compile (default) changes the MLP's run time by less than 10%: "
              "its matrix products stay in the library", gemm.speedup,
              abs(gemm.speedup - 1) < 0.10 or not gemm.significant, fmt="{:.2f}x", why=f"spread {gemm.noise_pct:.1f}%")
    autotune, default = mlp_st.run("max-autotune-no-cudagraphs"), mlp_st.run("default")
    search = mlp_st.compare("default", "max-autotune-no-cudagraphs")
    lab.check("max-autotune-no-cudagraphs compiles the MLP at least 2x longer than default (cold caches)",
              autotune.cold_s / default.cold_s, autotune.cold_s >= 2 * default.cold_s, fmt="{:.1f}x",
              why=f"{default.cold_s:.1f} s -> {autotune.cold_s:.1f} s")
    lab.check("max-autotune's kernel search changes the MLP's run time by less than 10% over default "
              "(diminishing returns)", search.speedup,
              abs(search.speedup - 1) < 0.10 or not search.significant, fmt="{:.2f}x",
              why=f"spread {search.noise_pct:.1f}%")
    for st in studies.values():
        warm_run = st.run("default")
        lab.check(f"a warm Inductor cache compiles the {st.model} at least 2x faster than a cold one (default mode)",
                  warm_run.warm_speedup, warm_run.warm_speedup >= 2, fmt="{:.1f}x",
                  why=f"{warm_run.cold_s:.2f} s -> {warm_run.warm_s:.2f} s")
    served = all(r.warm_cache["fx_hits"] + r.warm_cache["aot_hits"] > 0 and r.warm_cache["fx_misses"] == 0
                 for st in studies.values() for r in st.modes if r.warm_cache is not None)
    lab.check("every warm compile was served from the cache (hits, no FX-graph misses)", float(served), served,
              fmt="{:.0f}")
    return lab


def ort_claims(ort_table: Sequence[Mapping[str, Any]], lab_report: report.LabReport | None = None) -> report.LabReport:
    """ONNX Runtime: what its levels buy each model and what they cost to build. `ort_table` holds
    :func:`~.ort_levels.ort_rows` of both models."""
    lab = _report(lab_report)
    ort_by = {(row["model"], row["level"]): row for row in ort_table}
    layout = ort_by[("convnet", "ORT_ENABLE_ALL")]
    lab.check("ONNX Runtime ORT_ENABLE_ALL runs the CNN significantly faster than ORT_DISABLE_ALL", layout["speedup"],
              layout["verdict"] == "faster", fmt="{:.2f}x", why=f"spread {layout['spread_pct']:.1f}%")
    gelu = ort_by[("mlp", "ORT_ENABLE_EXTENDED")]
    lab.check("ONNX Runtime ORT_ENABLE_EXTENDED (GELU fused) runs the MLP significantly faster than ORT_DISABLE_ALL",
              gelu["speedup"], gelu["verdict"] == "faster", fmt="{:.2f}x", why=f"spread {gelu['spread_pct']:.1f}%")
    slowest_build_ms = max(row["build_ms"] for row in ort_table)
    lab.check("every ONNX Runtime session builds in under 1 s at every level (its optimization is cheap)",
              slowest_build_ms, slowest_build_ms < 1000, fmt="{:.1f} ms")
    lab.check("ORT_ENABLE_ALL's extra build time is paid back within 1,000 CNN inferences", layout["break_even"],
              layout["break_even"] <= 1000, fmt="{:,.0f} inferences")
    return lab


def _level(results: Sequence[EngineResult], value: int) -> EngineResult:
    return next(r for r in results if r.config.builder_optimization_level == value)


def _knob(results: Sequence[EngineResult], name: str, value: Any) -> EngineResult:
    return next(r for r in results if getattr(r.config, name) == value)


def tensorrt_claims(results: TensorRTResults | None, lab_report: report.LabReport | None = None) -> report.LabReport:
    """TensorRT: levels, the timing cache cold, warm and reused, the editable timing cache, and the
    tactic knobs' build times; every claim not applicable where `results` is None (no TensorRT)."""
    lab = _report(lab_report)
    if results is None:
        for claim in TRT_CLAIMS.values():
            lab.not_applicable(claim, NO_TRT)
        return lab
    names = list(results.levels)
    build_ratio = min(_level(results.levels[n], 5).build_s / _level(results.levels[n], 0).build_s for n in names)
    lab.check(TRT_CLAIMS["levels_build"], build_ratio, build_ratio > 1, fmt="{:.1f}x (smaller of the two)")
    slow = [bench.compare(_level(results.levels[n], 3).runs, _level(results.levels[n], 0).runs) for n in names]
    lab.check(TRT_CLAIMS["level0_slow"], min(c.median_b_ms / c.median_a_ms for c in slow),
              all(c.significant and c.speedup < 1 for c in slow), fmt="{:.2f}x of level 3 (smaller)")
    flat = [bench.compare(_level(results.levels[n], 3).runs, _level(results.levels[n], v).runs)
            for n in names for v in (4, 5)]
    lab.check(TRT_CLAIMS["levels_flat"], max(abs(c.difference_pct) for c in flat),
              all(abs(c.difference_pct) <= max(5.0, c.noise_pct) for c in flat), fmt="{:.1f}% at most")
    warm_ratio = min(results.cache[n]["cold"].build_s / results.cache[n]["warm"].build_s for n in names)
    lab.check(TRT_CLAIMS["warm"], warm_ratio, warm_ratio > 1, fmt="{:.1f}x (smaller of the two)")
    reuse = results.reuse
    reuse_ratio = reuse["empty"].build_s / reuse["reused"].build_s
    lab.check(TRT_CLAIMS["reuse"], reuse_ratio, reuse_ratio > 1, fmt="{:.1f}x",
              why=f"{reuse['donor_entries']} entries reused")
    editable = results.editable
    if editable["forced"] is not None:
        lab.check(TRT_CLAIMS["editable"], float(editable["forced_kernel_in_engine"]),
                  editable["forced_kernel_in_engine"], fmt="{:.0f}", why=editable["tactic"].kernel[:48])
        choice = editable["comparison"]
        lab.check(TRT_CLAIMS["builder_choice"], choice.speedup, choice.speedup <= 1 or not choice.significant,
                  fmt="{:.2f}x (forced vs chosen)", why=f"spread {choice.noise_pct:.1f}%")
    else:
        for key in ("editable", "builder_choice"):
            lab.not_applicable(TRT_CLAIMS[key], NO_SECOND_TACTIC)
    # (claim, knob, the value expected to build longer, the value expected to build faster)
    for key, name, longer, shorter in (("avg_timing", "avg_timing_iterations", 8, 1),
                                       ("tiling", "tiling_optimization_level", "FULL", "NONE"),
                                       ("max_tactics", "max_num_tactics", -1, 1),
                                       ("jit", "tactic_sources", DEFAULTS["tactic_sources"],
                                        frozenset({"EDGE_MASK_CONVOLUTIONS"}))):
        slower, faster = _knob(results.knobs[name], name, longer), _knob(results.knobs[name], name, shorter)
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
