"""Lab 01 (batching): which backends to sweep, TensorRT's optimization-profile study, and the lab's claims.

The sweep compares every backend this machine has at one precision: FP16 on a GPU (PyTorch eager,
`torch.compile`, and TensorRT from an FP16 ONNX where installed), FP32 on a CPU (PyTorch eager and
ONNX Runtime, the CPU counterpart of an engine). The models are exported with
:func:`common.onnx.export_zoo_pair` and swept with :func:`common.sweeps.batch_sweep`;
:func:`batching_claims` and :func:`tensorrt_claims` read what the sweep and the profile study measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from common import bench, checks, env, models, report, sweeps
from common.runners import OnnxRuntimeRunner, Runner, TensorRTRunner, TorchCompileRunner, TorchEagerRunner

LAB = "01_batching"


def make_runners(name: str, scale: str, onnx_paths: dict[str, Path], *, with_compile: bool = True) -> list[Runner]:
    """The backends this machine has, all at one precision (FP16 on a GPU, FP32 on a CPU)."""
    model = models.build(name, scale)

    def make_input(batch: int) -> torch.Tensor:
        return models.example_input(name, batch, scale)

    if not env.has("gpu"):
        threads = env.detect().cpu_count
        return [TorchEagerRunner(model, make_input, device="cpu", precision="fp32"),
                OnnxRuntimeRunner(onnx_paths["fp32"], make_input, intra_op_threads=threads)]
    runners: list[Runner] = [TorchEagerRunner(model, make_input, device="cuda", precision="fp16")]
    if with_compile:
        runners.append(TorchCompileRunner(models.build(name, scale), make_input, device="cuda", precision="fp16"))
    if "CUDAExecutionProvider" in env.detect().ort_providers:
        runners.append(OnnxRuntimeRunner(onnx_paths["fp16"], make_input,
                                         providers=["CUDAExecutionProvider", "CPUExecutionProvider"]))
    if env.has("tensorrt"):
        from common.trt import BuildConfig, batch_profile

        sample = models.spec(name, scale).sample_shape
        config = BuildConfig(profiles=(batch_profile("input", sample, 1, 64, 256),))
        runners.append(TensorRTRunner(onnx_paths["fp16"], make_input, config, precision="fp16"))
    return runners


def check_outputs(runners: list[Runner], name: str, scale: str, batch: int = 2) -> dict[str, float]:
    """Each runner's relative error against PyTorch FP32 on the CPU, on the same input; compare each
    with ``checks.tolerance(runner.precision, "model")`` before timing it."""
    reference_model = models.build(name, scale)
    x = models.example_input(name, batch, scale)
    with torch.inference_mode():
        reference = reference_model(x)
    errors = {}
    for runner in runners:
        runner.prepare(batch)
        runner.run()
        errors[runner.label] = checks.relative_error(runner.output(), reference)
    return errors


def opt_profile_study(name: str, scale: str, onnx_fp16: Path, batches: list[int], max_batch: int,
                      wide_opt: int, make_input: Callable[[int], torch.Tensor] | None = None) -> list[dict]:
    """TensorRT: one engine whose profile spans 1..max_batch (opt=wide_opt) against, per batch, an
    engine whose profile's opt equals that batch. Each measured twice; returns one row per batch."""
    from common.trt import BuildConfig, batch_profile

    env.require("tensorrt")
    sample = models.spec(name, scale).sample_shape
    make_input = make_input or (lambda b: models.example_input(name, b, scale))

    def engine(opt: int) -> TensorRTRunner:
        config = BuildConfig(profiles=(batch_profile("input", sample, 1, opt, max_batch),))
        return TensorRTRunner(onnx_fp16, make_input, config, precision="fp16")

    wide = engine(wide_opt)
    rows = []
    for batch in batches:
        matched = engine(batch)
        runs_wide = [wide.measure(batch, name=f"opt={wide_opt}") for _ in range(2)]
        runs_matched = [matched.measure(batch, name=f"opt={batch}") for _ in range(2)]
        cmp = bench.compare(runs_wide, runs_matched)
        rows.append({"batch": batch, "wide_opt_ms": cmp.median_a_ms, "matched_opt_ms": cmp.median_b_ms,
                     "speedup": cmp.speedup, "significant": cmp.significant, "verdict": cmp.verdict()})
    return rows


# -- claims -----------------------------------------------------------------------------------------

def batching_claims(rows: Sequence[dict], runners: Mapping[str, Sequence[Runner]], units: Mapping[str, str], *,
                    batches: Sequence[int], has_gpu: bool,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """Per model, from the sweep's `rows`: the gain of the best batch over batch 1, the knee before the
    largest batch, medians that repeat past the knee and vary more below it (on a GPU), and
    torch.compile against eager at the largest batch both were swept at.

    `runners` maps each model to its runners, the baseline (PyTorch eager) first; only their `label`
    and `backend` are read. `units` maps each model to its throughput unit ("img", "seq").
    """
    lab_report = report.LabReport(LAB) if lab_report is None else lab_report
    for name, unit in units.items():
        base = runners[name][0]
        model_rows = sweeps.rows_for(rows, model=name, backend=base.label)
        s = sweeps.scaling([r["batch"] for r in model_rows], [r[f"throughput_{unit}_per_s"] for r in model_rows])
        floor = 10 if has_gpu else 1.5
        lab_report.check(f"{name}: throughput at the best batch is at least {floor}x batch 1 ({base.backend})",
                         s.gain_over_batch1, s.gain_over_batch1 >= floor, fmt="{:.1f}x at batch %d" % s.best_batch)
        lab_report.check(f"{name}: throughput saturates before batch {max(batches)} ({base.backend})",
                         s.knee_batch, s.knee_batch < max(batches), fmt="knee at batch {:.0f}",
                         why="80% of the best throughput reached there")
        # Past the knee the device sets the pace; up to it, the host launching kernels often does.
        saturated = [r for r in model_rows if r["batch"] > s.knee_batch]
        below = [r for r in model_rows if r["batch"] <= s.knee_batch]
        if saturated:
            worst = max(saturated, key=lambda r: r["spread_pct"])
            lab_report.check(f"{name}: past the knee, medians repeat within 3% between the two passes ({base.backend})",
                             worst["spread_pct"], worst["spread_pct"] < 3, fmt="worst {:.2f}%",
                             why=f"at batch {worst['batch']}")
        claim = f"{name}: up to the knee, where the host sets the pace, medians vary more between passes"
        if has_gpu and saturated:
            worst_below = max(below, key=lambda r: r["spread_pct"])
            lab_report.check(claim, worst_below["spread_pct"], worst_below["spread_pct"] > worst["spread_pct"],
                             fmt="worst {:.1f}%", why=f"at batch {worst_below['batch']}")
        else:
            lab_report.not_applicable(claim, "on a CPU the host does all the work: no launch-bound regime to compare")
        _compile_claim(name, model_rows, rows, runners[name], lab_report)
    return lab_report


def _compile_claim(name: str, eager_rows: list[dict], rows: Sequence[dict], runners: Sequence[Runner],
                   lab_report: report.LabReport) -> None:
    compiled = [r for r in runners if r.backend.startswith("torch.compile")]
    compiled_rows = sweeps.rows_for(rows, model=name, backend=compiled[0].label) if compiled else []
    if not compiled_rows:
        lab_report.not_applicable(f"{name}: torch.compile is faster than eager at the largest batch",
                                  "torch.compile is swept on a GPU only (its compile time dominates at CPU scale)")
        return
    big = max(r["batch"] for r in compiled_rows)
    eager_big = sweeps.rows_for(eager_rows, batch=big)[0]
    compiled_big = sweeps.rows_for(compiled_rows, batch=big)[0]
    gain = eager_big["latency_ms"] / compiled_big["latency_ms"]
    noise = max(eager_big["spread_pct"], compiled_big["spread_pct"])
    lab_report.check(f"{name}: torch.compile is faster than eager at batch {big}", gain,
                     (gain - 1) * 100 > noise, fmt="{:.2f}x", why=f"run-to-run spread {noise:.1f}%")


def tensorrt_claims(studies: Mapping[str, list[dict]] | None, machine: env.Environment,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """Per model, from :func:`opt_profile_study`'s rows: a profile whose opt matches the batch beats one
    wide profile, significantly, at some batch. `studies` None (TensorRT did not run): not applicable,
    saying whether TensorRT or a GPU is missing on `machine`."""
    lab_report = report.LabReport(LAB) if lab_report is None else lab_report
    if studies is None:
        lab_report.not_applicable("a profile whose opt matches the batch is faster than one wide profile at some batch",
                                  "needs TensorRT: " + ("not installed" if machine.tensorrt is None else "no GPU"))
        return lab_report
    for name, study in studies.items():
        best = max(study, key=lambda r: r["speedup"] if r["significant"] else 1.0)
        lab_report.check(f"{name}: a profile whose opt matches the batch is faster than one wide profile at some batch",
                         best["speedup"], best["significant"] and best["speedup"] > 1, fmt="{:.2f}x",
                         why=f"at batch {best['batch']}")
    return lab_report
