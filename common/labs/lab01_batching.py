"""Lab 01 (batching): which backends to sweep, what the curves show, TensorRT's optimization-profile
study, and the lab's claims.

The sweep compares every backend this machine has at one precision: FP16 on a GPU (PyTorch eager,
`torch.compile`, and TensorRT from an FP16 ONNX where installed), FP32 on a CPU (PyTorch eager and
ONNX Runtime, the CPU counterpart of an engine). The models are exported with
:func:`common.onnx.export_zoo_pair` and swept with :func:`common.sweeps.batch_sweep` over
:data:`common.bench.PASSES` passes. On a GPU every point also carries the GPU's own kernel time, so
:func:`with_device_throughput` adds the throughput the device alone would give (batch / kernel time)
and :func:`knees` finds the knee on it as well as on end-to-end throughput; :func:`curve_plot` shades
the batches where the host set the pace. :func:`batching_claims` and :func:`tensorrt_claims` read
what the sweep and the profile study measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import torch

from common import bench, checks, env, models, plots, report, sweeps
from common.runners import OnnxRuntimeRunner, Runner, TensorRTRunner, TorchCompileRunner, TorchEagerRunner

LAB = "01_batching"
#: Largest spread of pass medians (%) a device-bound point may show: the harness's repeatability goal.
STEADY_SPREAD_PCT = 3.0
#: The TensorRT engine of the sweep: one dynamic-batch profile (min, opt, max).
SWEEP_PROFILE = (1, 64, 256)


def sweep_build_config(name: str, scale: str, batches: tuple[int, int, int] = SWEEP_PROFILE):
    """The BuildConfig of the sweep's TensorRT engine: one profile over the batch, (min, opt, max) = `batches`."""
    from common.trt import BuildConfig, batch_profile

    return BuildConfig(profiles=(batch_profile("input", models.spec(name, scale).sample_shape, *batches),))


def trtexec_commands(name: str, scale: str, *, study_batches: Sequence[int] = (1, 8, 256), max_batch: int = 256,
                     wide_opt: int = 64) -> list[str]:
    """The trtexec commands that rebuild and time lab 01's engines from the FP16 ONNX of zoo model `name`
    (file named as :func:`common.onnx.export_zoo_pair` names it): the sweep's engine, then the profile
    study's engines, each run at the batch it is timed at. Needs no TensorRT."""
    from common.trt import trtexec_command

    onnx_name = f"{name}_{scale}_fp16.onnx"
    sample = models.spec(name, scale).sample_shape
    wide = sweep_build_config(name, scale, (1, wide_opt, max_batch))
    commands = [trtexec_command(onnx_name, sweep_build_config(name, scale), shapes={"input": (1, *sample)})]
    for batch in study_batches:
        matched = sweep_build_config(name, scale, (1, batch, max_batch))
        commands += [trtexec_command(onnx_name, config, shapes={"input": (batch, *sample)}) for config in (wide, matched)]
    return commands


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
        runners.append(TensorRTRunner(onnx_paths["fp16"], make_input, sweep_build_config(name, scale), precision="fp16"))
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
                      wide_opt: int, make_input: Callable[[int], torch.Tensor] | None = None,
                      passes: int = bench.PASSES, **bench_kwargs) -> list[dict]:
    """TensorRT: one engine whose profile spans 1..max_batch (opt=wide_opt) against, per batch, an
    engine whose profile's opt equals that batch, each checked against PyTorch FP32 first, then
    measured in `passes` interleaved passes. The tactics a profile picks are a device effect, so the
    two are compared on kernel time (event time beside it); one row per batch."""
    env.require("tensorrt")
    make_input = make_input or (lambda b: models.example_input(name, b, scale))

    def engine(opt: int) -> TensorRTRunner:
        runner = TensorRTRunner(onnx_fp16, make_input, sweep_build_config(name, scale, (1, opt, max_batch)),
                                precision="fp16")
        check_outputs([runner], name, scale, batch=2)   # verified before timing, on a small batch
        return runner

    wide = engine(wide_opt)
    rows = []
    for batch in batches:
        matched = engine(batch)
        runs: dict[str, list[bench.Measurement]] = {"wide": [], "matched": []}
        for _ in range(passes):
            runs["wide"].append(wide.measure(batch, name=f"opt={wide_opt}", **bench_kwargs))
            runs["matched"].append(matched.measure(batch, name=f"opt={batch}", **bench_kwargs))
        on_kernel = bench.compare(runs["wide"], runs["matched"], on="kernel")
        on_event = bench.compare(runs["wide"], runs["matched"], on="event")
        lo, hi = on_kernel.interval
        rows.append({"batch": batch, "wide_opt_kernel_ms": on_kernel.median_a_ms,
                     "matched_opt_kernel_ms": on_kernel.median_b_ms, "speedup": on_kernel.speedup,
                     "interval_lo": lo, "interval_hi": hi, "event_speedup": on_event.speedup,
                     **bench.kernel_fields(runs["matched"]), "verdict": on_kernel.verdict()})
    return rows


# -- what the curves show ---------------------------------------------------------------------------

def with_device_throughput(rows: Sequence[dict], unit: str) -> list[dict]:
    """The rows with ``device_throughput_<unit>_per_s`` = batch / kernel time added: the throughput the
    GPU alone would give if the host never made it wait (NaN where kernel time was not measured)."""
    out = []
    for r in rows:
        kernel_ms = r.get("kernel_ms", float("nan"))
        usable = isinstance(kernel_ms, float) and kernel_ms > 0 and not math.isnan(kernel_ms)
        out.append({**r, f"device_throughput_{unit}_per_s": r["batch"] / (kernel_ms / 1e3) if usable else float("nan")})
    return out


@dataclass(frozen=True)
class Knees:
    """The knee of one backend's curve on end-to-end throughput, and on device throughput where measured."""

    end_to_end: sweeps.Scaling
    device: sweeps.Scaling | None


def knees(rows: Sequence[dict], unit: str) -> Knees:
    """Both knees of one backend's rows (:func:`common.sweeps.scaling`: 80% of the best throughput)."""
    batches = [r["batch"] for r in rows]
    end_to_end = sweeps.scaling(batches, [r[f"throughput_{unit}_per_s"] for r in rows])
    device = [r.get(f"device_throughput_{unit}_per_s", float("nan")) for r in rows]
    measured = all(isinstance(t, float) and not math.isnan(t) for t in device)
    return Knees(end_to_end, sweeps.scaling(batches, device) if measured else None)


def host_bound_spans(rows: Sequence[dict]) -> list[tuple[float, float]]:
    """The batch ranges to shade on a log-2 axis: around each host-bound point, halfway (geometrically)
    to its neighbours; adjacent ranges merged."""
    batches = sorted(r["batch"] for r in rows)
    host = {r["batch"] for r in rows if r.get("regime") == bench.HOST_BOUND}
    spans: list[tuple[float, float]] = []
    for i, b in enumerate(batches):
        if b not in host:
            continue
        lo = math.sqrt(b * batches[i - 1]) if i > 0 else b / math.sqrt(2)
        hi = math.sqrt(b * batches[i + 1]) if i + 1 < len(batches) else b * math.sqrt(2)
        if spans and math.isclose(spans[-1][1], lo):
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans


def device_bound_spread(rows: Sequence[dict]) -> dict[tuple[str, str], tuple[float, int] | None]:
    """Per (model, backend): the widest spread of pass medians (%) among its device-bound points, and
    the batch it was at; None for a backend with no device-bound point."""
    out: dict[tuple[str, str], tuple[float, int] | None] = {}
    for r in rows:
        key = (r["model"], r["backend"])
        out.setdefault(key, None)
        if r.get("regime") == bench.DEVICE_BOUND and (out[key] is None or r["spread_pct"] > out[key][0]):
            out[key] = (r["spread_pct"], r["batch"])
    return out


def curve_plot(rows: Sequence[dict], *, y: str, ylabel: str, title: str, path, baseline: str,
               device_y: str | None = None, marks: Sequence[tuple[float, str]] = (), show: bool = True) -> Path:
    """Log-log curves against batch, one per backend: a line where a backend was swept over many batches,
    markers only where it has two points (a line would claim a scaling nobody measured). The batches
    where `baseline`'s points were host-bound are shaded; `device_y` adds `baseline`'s device-only curve
    (dashed); `marks` draws vertical lines (knees)."""
    fig, ax = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    base_rows = [r for r in rows if r["backend"] == baseline]
    for i, (lo, hi) in enumerate(host_bound_spans(base_rows)):
        ax.axvspan(lo, hi, color="#ffcc80", alpha=0.35, linewidth=0,
                   label=f"host-bound ({baseline.split(' (')[0]})" if i == 0 else None)
    for name in dict.fromkeys(r["backend"] for r in rows):
        pts = sorted((r["batch"], r[y]) for r in rows if r["backend"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name,
                linestyle="-" if len(pts) > 2 else "none")
    if device_y:
        pts = sorted((r["batch"], r[device_y]) for r in base_rows if not math.isnan(r[device_y]))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="--", marker=".", color="grey",
                    label=f"{baseline.split(' (')[0]}: batch / kernel time (device only)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    for xv, text in marks:
        ax.axvline(xv, color="grey", linestyle=":", linewidth=1)
        ax.annotate(text, (xv, ax.get_ylim()[1]), textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set(title=title, xlabel="batch size", ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return plots.finish_figure(fig, list(rows), path, show)


# -- claims -----------------------------------------------------------------------------------------

def _pass_medians(row: dict) -> list[float]:
    return list(row.get("pass_medians_ms") or [row["latency_ms"]])


def _ratio_interval(medians_a: Sequence[float], medians_b: Sequence[float]) -> tuple[float, float]:
    """The bootstrap interval of median(a) / median(b), or NaNs with fewer than two passes a side."""
    if min(len(medians_a), len(medians_b)) < 2:
        return (float("nan"), float("nan"))
    return bench.ratio_interval(medians_a, medians_b)


def batching_claims(rows: Sequence[dict], runners: Mapping[str, Sequence[Runner]], units: Mapping[str, str], *,
                    batches: Sequence[int], has_gpu: bool,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """Per model, from the sweep's `rows`: the gain of the best batch over batch 1 (with its interval over
    passes), the knee before the largest batch, on a GPU the knee on device throughput against the
    end-to-end one, medians that repeat within 3% where the device sets the pace (past the knee on a
    CPU) and vary more where the host does, and torch.compile against eager at the largest batch both
    were swept at.

    `runners` maps each model to its runners, the baseline (PyTorch eager) first; only their `label`
    and `backend` are read. `units` maps each model to its throughput unit ("img", "seq").
    """
    lab_report = report.LabReport(LAB) if lab_report is None else lab_report
    for name, unit in units.items():
        base = runners[name][0]
        model_rows = with_device_throughput(sweeps.rows_for(rows, model=name, backend=base.label), unit)
        k = knees(model_rows, unit)
        s = k.end_to_end
        floor = 10 if has_gpu else 1.5
        one, best = sweeps.rows_for(model_rows, batch=1)[0], sweeps.rows_for(model_rows, batch=s.best_batch)[0]
        lab_report.check_ratio(f"{name}: throughput at the best batch is at least {floor}x batch 1 ({base.backend})",
                               s.gain_over_batch1,
                               _ratio_interval([s.best_batch * x for x in _pass_medians(one)], _pass_medians(best)),
                               threshold=floor, fmt="{:.1f}x", why=f"best at batch {s.best_batch}; event time")
        lab_report.check(f"{name}: throughput saturates before batch {max(batches)} ({base.backend})",
                         s.knee_batch, s.knee_batch < max(batches), fmt="knee at batch {:.0f}",
                         why="80% of the best throughput reached there")
        _device_knee_claim(name, base, k, has_gpu, lab_report)
        _repeatability_claims(name, base, model_rows, s, has_gpu, lab_report)
        _compile_claim(name, model_rows, rows, runners[name], lab_report)
    return lab_report


def _device_knee_claim(name: str, base: Runner, k: Knees, has_gpu: bool, lab_report: report.LabReport) -> None:
    claim = (f"{name}: on the GPU's own time (batch / kernel time) throughput saturates no later than end to end "
             f"({base.backend})")
    if k.device is None:
        lab_report.not_applicable(claim, "needs kernel time: measured by CUPTI on a GPU only" if not has_gpu else
                                  "kernel time was not measured in this run")
        return
    lab_report.check(claim, k.device.knee_batch, k.device.knee_batch <= k.end_to_end.knee_batch,
                     fmt="device knee at batch {:.0f}",
                     why=f"end-to-end knee at batch {k.end_to_end.knee_batch}: where the host sets the pace, "
                         f"the end-to-end curve hides the device's own knee")


def _repeatability_claims(name: str, base: Runner, model_rows: list[dict], s: sweeps.Scaling, has_gpu: bool,
                          lab_report: report.LabReport) -> None:
    """On a GPU by each point's regime; on a CPU (no kernel time) past the knee."""
    noisy_claim = f"{name}: where the host sets the pace, medians vary more between passes than where the device does"
    if not has_gpu:
        steady = [r for r in model_rows if r["batch"] > s.knee_batch]
        if steady:
            worst = max(steady, key=lambda r: r["spread_pct"])
            lab_report.check(f"{name}: past the knee, medians repeat within {STEADY_SPREAD_PCT:g}% over the passes "
                             f"({base.backend})", worst["spread_pct"], worst["spread_pct"] < STEADY_SPREAD_PCT,
                             fmt="worst {:.2f}%", why=f"at batch {worst['batch']}; range of the pass medians")
        lab_report.not_applicable(noisy_claim, "on a CPU the host does all the work: no launch-bound regime to compare")
        return
    device = [r for r in model_rows if r.get("regime") == bench.DEVICE_BOUND]
    host = [r for r in model_rows if r.get("regime") == bench.HOST_BOUND]
    steady_claim = (f"{name}: device-bound points' medians repeat within {STEADY_SPREAD_PCT:g}% over the passes "
                    f"({base.backend})")
    if not device:
        lab_report.not_applicable(steady_claim, "no point of the sweep was device-bound (GPU busy >= 80%)")
        lab_report.not_applicable(noisy_claim, "no device-bound point to compare with")
        return
    worst = max(device, key=lambda r: r["spread_pct"])
    lab_report.check(steady_claim, worst["spread_pct"], worst["spread_pct"] < STEADY_SPREAD_PCT, fmt="worst {:.2f}%",
                     why=f"at batch {worst['batch']}; range of the pass medians")
    if not host:
        lab_report.not_applicable(noisy_claim, "no point of the sweep was host-bound (GPU busy < 50%)")
        return
    worst_host = max(host, key=lambda r: r["spread_pct"])
    lab_report.check(noisy_claim, worst_host["spread_pct"], worst_host["spread_pct"] > worst["spread_pct"],
                     fmt="worst {:.1f}%", why=f"host-bound at batch {worst_host['batch']}; device-bound worst "
                                              f"{worst['spread_pct']:.2f}%")


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
    lab_report.check_ratio(f"{name}: torch.compile is faster than eager at batch {big}", gain,
                           _ratio_interval(_pass_medians(eager_big), _pass_medians(compiled_big)), threshold=1.0,
                           why=f"event time (what a caller waits for); eager is {eager_big.get('regime', 'not measured')} "
                               f"there")


def tensorrt_claims(studies: Mapping[str, list[dict]] | None, machine: env.Environment,
                    lab_report: report.LabReport | None = None) -> report.LabReport:
    """Per model, from :func:`opt_profile_study`'s rows: a profile whose opt matches the batch beats one
    wide profile at some batch, on kernel time, decided from the interval of the row whose interval
    lies highest. `studies` None (TensorRT did not run): not applicable, saying whether TensorRT or a
    GPU is missing on `machine`."""
    lab_report = report.LabReport(LAB) if lab_report is None else lab_report
    claim = "a profile whose opt matches the batch is faster than one wide profile at some batch (kernel time)"
    if studies is None:
        lab_report.not_applicable(claim, "needs TensorRT: " + ("not installed" if machine.tensorrt is None else "no GPU"))
        return lab_report
    for name, study in studies.items():
        best = max(study, key=lambda r: r["interval_lo"])
        lab_report.check_ratio(f"{name}: {claim}", best["speedup"], (best["interval_lo"], best["interval_hi"]),
                               threshold=1.0, why=f"at batch {best['batch']}")
    return lab_report
