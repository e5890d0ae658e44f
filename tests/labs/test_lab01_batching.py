"""common.labs.lab01_batching: the backends a machine sweeps, checked against FP32, and the lab's claims
driven through every branch with synthetic sweep rows (GPU, CPU, TensorRT or not)."""

from types import SimpleNamespace

import pytest
import torch

from common import bench, checks, env, models, report, runners
from common import onnx as onnx_tools
from common.labs import lab01_batching as lab

EAGER_GPU = SimpleNamespace(label="PyTorch eager (cuda, fp16, channels_last)", backend="PyTorch eager")
COMPILED_GPU = SimpleNamespace(label="torch.compile (default) (cuda, fp16, channels_last)",
                               backend="torch.compile (default)")
EAGER_CPU = SimpleNamespace(label="PyTorch eager (cpu, fp32)", backend="PyTorch eager")
ORT_CPU = SimpleNamespace(label="ONNX Runtime CPU (cpu, fp32)", backend="ONNX Runtime CPU")
GPU_BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
# resnet50 on an H100 (PyTorch eager, FP16): host-bound and noisy up to batch 64, steady past it
H100_LATENCY_MS = [6.677, 5.478, 5.326, 6.019, 7.265, 7.762, 7.471, 9.841, 18.65]
H100_SPREAD_PCT = [24.25, 67.48, 25.77, 59.97, 2.456, 2.095, 0.3157, 0.04098, 0.03243]
H100_KERNEL_MS = [1.2, 1.3, 1.5, 1.9, 2.7, 4.1, 6.5, 9.6, 18.5]


def passes(ms, spread_pct):
    """Five pass medians around `ms` whose range is `spread_pct` of the smallest."""
    lo = ms / (1 + spread_pct / 200)
    return [lo * (1 + spread_pct / 100 * f) for f in (0.5, 0.0, 1.0, 0.25, 0.75)]


def sweep_rows(model, runner, batches, latency_ms, spread_pct, unit="img", kernel_ms=None):
    """Rows as sweeps.batch_sweep writes them, with the fields the claims read."""
    kernel_ms = kernel_ms or [float("nan")] * len(batches)
    rows = []
    for b, ms, spread, k in zip(batches, latency_ms, spread_pct, kernel_ms):
        regime = bench.regime_of(k / ms) if runner.label.startswith(("PyTorch eager (cuda", "torch.compile")) else "cpu"
        rows.append({"model": model, "backend": runner.label, "batch": b, "latency_ms": ms, "spread_pct": spread,
                     "pass_medians_ms": passes(ms, spread), f"throughput_{unit}_per_s": b / (ms / 1e3),
                     "kernel_ms": k, "regime": regime})
    return rows


def outcome(lab_report):
    return [(c.claim, c.measured, c.status, c.why) for c in lab_report.claims]


def statuses(lab_report):
    return {c.claim: c.status for c in lab_report.claims}


def test_batching_claims_on_a_gpu_as_measured_on_an_h100():
    rows = sweep_rows("resnet50", EAGER_GPU, GPU_BATCHES, H100_LATENCY_MS, H100_SPREAD_PCT, kernel_ms=H100_KERNEL_MS)
    rows += sweep_rows("resnet50", COMPILED_GPU, [1, 256], [4.676, 10.31], [3.238, 0.2642], kernel_ms=[1.0, 10.2])
    lab_report = lab.batching_claims(rows, {"resnet50": [EAGER_GPU, COMPILED_GPU]}, {"resnet50": "img"},
                                     batches=GPU_BATCHES, has_gpu=True)
    got = outcome(lab_report)
    assert [c[2] for c in got] == [report.HOLDS] * 6
    gain, knee, device_knee, steady, noisy, compiled = got
    assert gain[0] == "resnet50: throughput at the best batch is at least 10x batch 1 (PyTorch eager)"
    assert gain[1].startswith("91.7x [") and gain[3] == "best at batch 256; event time"
    assert knee[1:] == ("knee at batch 128", report.HOLDS, "80% of the best throughput reached there")
    assert device_knee[1] == "device knee at batch 128" and device_knee[3].startswith("end-to-end knee at batch 128")
    assert steady[0] == "resnet50: device-bound points' medians repeat within 3% over the passes (PyTorch eager)"
    assert steady[1:] == ("worst 0.32%", report.HOLDS, "at batch 64; range of the pass medians")
    assert noisy[1:] == ("worst 67.5%", report.HOLDS, "host-bound at batch 2; device-bound worst 0.32%")
    assert compiled[0] == "resnet50: torch.compile is faster than eager at batch 256" and compiled[1].startswith("1.81x [")
    assert compiled[3] == "event time (what a caller waits for); eager is device-bound there"
    assert lab_report.unexplained() == []


def test_batching_claims_that_do_not_hold_or_are_inconclusive_on_a_gpu():
    # gains 4x only; device knee after the end-to-end one; noisy where device-bound and steady where
    # host-bound; torch.compile within the noise
    batches = [1, 2, 4, 8, 16]
    latency = [1.0, 1.0, 1.0, 2.0, 4.0]
    rows = sweep_rows("transformer", EAGER_GPU, batches, latency, [1.0, 1.0, 2.0, 2.0, 5.0], unit="seq",
                      kernel_ms=[0.1, 0.2, 0.4, 0.5, 3.9])
    rows += sweep_rows("transformer", COMPILED_GPU, [1, 16], [0.9, 3.9], [1.0, 8.0], unit="seq", kernel_ms=[0.5, 3.8])
    got = {c.claim: (c.measured, c.status, c.why) for c in lab.batching_claims(
        rows, {"transformer": [EAGER_GPU, COMPILED_GPU]}, {"transformer": "seq"}, batches=batches,
        has_gpu=True).claims}
    assert [v[1] for v in got.values()] == [report.FAILS, report.HOLDS, report.FAILS, report.FAILS, report.FAILS,
                                            report.INCONCLUSIVE]
    assert got["transformer: throughput saturates before batch 16 (PyTorch eager)"][0] == "knee at batch 4"
    device = got["transformer: on the GPU's own time (batch / kernel time) throughput saturates no later than end to "
                 "end (PyTorch eager)"]
    assert device[0] == "device knee at batch 8"
    assert got["transformer: device-bound points' medians repeat within 3% over the passes (PyTorch eager)"][:2] == (
        "worst 5.00%", report.FAILS)
    assert "straddles 1.00x" in got["transformer: torch.compile is faster than eager at batch 16"][2]


def test_a_sweep_with_no_device_bound_or_no_host_bound_point():
    host_only = sweep_rows("resnet50", EAGER_GPU, [1, 2, 4], [1.0, 1.0, 1.0], [5.0, 5.0, 5.0], kernel_ms=[0.1] * 3)
    got = statuses(lab.batching_claims(host_only, {"resnet50": [EAGER_GPU]}, {"resnet50": "img"}, batches=[1, 2, 4],
                                       has_gpu=True))
    assert list(got.values()) == [report.FAILS, report.FAILS, report.HOLDS, report.NOT_APPLICABLE,
                                  report.NOT_APPLICABLE, report.NOT_APPLICABLE]
    device_only = sweep_rows("resnet50", EAGER_GPU, [1, 2, 4], [1.0, 1.5, 3.0], [1.0, 1.0, 1.0], kernel_ms=[0.9, 1.4, 2.9])
    claims = lab.batching_claims(device_only, {"resnet50": [EAGER_GPU]}, {"resnet50": "img"}, batches=[1, 2, 4],
                                 has_gpu=True).claims
    assert [(c.status, c.why) for c in claims[4:6]] == [
        (report.NOT_APPLICABLE, "no point of the sweep was host-bound (GPU busy < 50%)"),
        (report.NOT_APPLICABLE, "torch.compile is swept on a GPU only (its compile time dominates at CPU scale)")]
    no_kernel = sweep_rows("resnet50", EAGER_GPU, [1, 2, 4], [1.0, 1.0, 1.0], [5.0, 5.0, 5.0])
    claim = lab.batching_claims(no_kernel, {"resnet50": [EAGER_GPU]}, {"resnet50": "img"}, batches=[1, 2, 4],
                                has_gpu=True).claims[2]
    assert (claim.status, claim.why) == (report.NOT_APPLICABLE, "kernel time was not measured in this run")


def test_batching_claims_on_a_cpu():
    rows = sweep_rows("resnet50", EAGER_CPU, [1, 2, 4, 8, 16], [2.0, 3.0, 5.0, 9.0, 17.0], [1.0, 2.0, 1.0, 0.5, 0.4])
    rows += sweep_rows("resnet50", ORT_CPU, [1, 2, 4, 8, 16], [1.0] * 5, [1.0] * 5)
    got = outcome(lab.batching_claims(rows, {"resnet50": [EAGER_CPU, ORT_CPU]}, {"resnet50": "img"},
                                      batches=[1, 2, 4, 8, 16], has_gpu=False))
    assert [(c[0], c[2]) for c in got] == [
        ("resnet50: throughput at the best batch is at least 1.5x batch 1 (PyTorch eager)", report.HOLDS),
        ("resnet50: throughput saturates before batch 16 (PyTorch eager)", report.HOLDS),
        ("resnet50: on the GPU's own time (batch / kernel time) throughput saturates no later than end to end "
         "(PyTorch eager)", report.NOT_APPLICABLE),
        ("resnet50: past the knee, medians repeat within 3% over the passes (PyTorch eager)", report.HOLDS),
        ("resnet50: where the host sets the pace, medians vary more between passes than where the device does",
         report.NOT_APPLICABLE),
        ("resnet50: torch.compile is faster than eager at the largest batch", report.NOT_APPLICABLE),
    ]
    assert got[0][1].startswith("1.9x [") and got[1][1] == "knee at batch 4"
    assert got[2][3] == "needs kernel time: measured by CUPTI on a GPU only"
    assert got[3][1:] == ("worst 0.50%", report.HOLDS, "at batch 8; range of the pass medians")


def test_device_throughput_knees_and_the_host_bound_spans():
    rows = sweep_rows("resnet50", EAGER_GPU, GPU_BATCHES, H100_LATENCY_MS, H100_SPREAD_PCT, kernel_ms=H100_KERNEL_MS)
    rows = lab.with_device_throughput(rows, "img")
    assert rows[0]["device_throughput_img_per_s"] == pytest.approx(1 / 1.2e-3)
    k = lab.knees(rows, "img")
    assert (k.end_to_end.knee_batch, k.device.knee_batch) == (128, 128)
    assert lab.knees(lab.with_device_throughput(sweep_rows("m", EAGER_GPU, [1, 2], [1.0, 1.0], [1.0, 1.0]), "img"),
                     "img").device is None
    spans = lab.host_bound_spans(rows)   # batches 1..16 host-bound (busy < 50%), 32 mixed, 64 up device-bound
    assert len(spans) == 1 and spans[0][0] == pytest.approx(2 ** -0.5) and spans[0][1] == pytest.approx(16 * 2 ** 0.5)
    gap = [dict(r, regime=bench.DEVICE_BOUND) if r["batch"] == 4 else r for r in rows]
    assert len(lab.host_bound_spans(gap)) == 2
    spread = lab.device_bound_spread(rows + sweep_rows("resnet50", COMPILED_GPU, [1], [4.0], [1.0], kernel_ms=[0.5]))
    assert spread == {("resnet50", EAGER_GPU.label): (pytest.approx(0.3157), 64), ("resnet50", COMPILED_GPU.label): None}


def test_curve_plot_draws_the_two_point_series_as_markers_only(tmp_path):
    rows = lab.with_device_throughput(
        sweep_rows("resnet50", EAGER_GPU, GPU_BATCHES, H100_LATENCY_MS, H100_SPREAD_PCT, kernel_ms=H100_KERNEL_MS)
        + sweep_rows("resnet50", COMPILED_GPU, [1, 256], [4.676, 10.31], [3.2, 0.3], kernel_ms=[1.0, 10.2]), "img")
    lines = []
    real_finish = lab.plots.finish_figure

    def finish(fig, data, path, show=True):
        lines.extend((line.get_label(), line.get_linestyle()) for line in fig.axes[0].get_lines())
        return real_finish(fig, data, path, show=False)

    lab.plots.finish_figure = finish
    try:
        png = lab.curve_plot(rows, y="throughput_img_per_s", ylabel="img/s", title="t", path=tmp_path / "curve",
                             baseline=EAGER_GPU.label, device_y="device_throughput_img_per_s", marks=[(128, "knee")])
    finally:
        lab.plots.finish_figure = real_finish
    assert png.exists() and (tmp_path / "curve.csv").exists()
    styles = dict(lines)
    assert styles[EAGER_GPU.label] == "-" and styles[COMPILED_GPU.label] == "None"
    assert styles["PyTorch eager: batch / kernel time (device only)"] == "--"


def machine(**kwargs):
    return env.Environment(python="3.11", os="Linux", cpu="x86_64", cpu_count=8, torch="2.5", **kwargs)


CLAIM_TRT = "a profile whose opt matches the batch is faster than one wide profile at some batch (kernel time)"


def test_tensorrt_claims_not_applicable_say_what_is_missing():
    lab_report = report.LabReport("01_batching")
    assert lab.tensorrt_claims(None, machine(cuda_available=False), lab_report) is lab_report
    assert outcome(lab_report) == [(CLAIM_TRT, "-", report.NOT_APPLICABLE, "needs TensorRT: not installed")]
    no_gpu = lab.tensorrt_claims(None, machine(cuda_available=False, tensorrt="11.4.0")).claims[0]
    assert (no_gpu.status, no_gpu.why) == (report.NOT_APPLICABLE, "needs TensorRT: no GPU")


def study(*rows):
    return [{"batch": b, "speedup": speedup, "interval_lo": lo, "interval_hi": hi} for b, speedup, lo, hi in rows]


def test_tensorrt_claims_decide_from_the_interval():
    h200 = machine(cuda_available=True, gpu_name="NVIDIA H200", compute_capability=(9, 0), tensorrt="11.4.0")
    studies = {
        "resnet50": study((1, 1.02, 0.99, 1.05), (8, 1.15, 1.1, 1.2), (256, 1.01, 1.0, 1.02)),
        "transformer": study((1, 1.3, 0.9, 1.7), (8, 0.9, 0.88, 0.92), (256, 1.0, 0.98, 1.02)),   # noise, and a loss
        "cnn": study((1, 0.9, 0.85, 0.95), (8, 0.8, 0.75, 0.85)),
    }
    got = outcome(lab.tensorrt_claims(studies, h200))
    assert [(c[0], c[1], c[2]) for c in got] == [
        (f"resnet50: {CLAIM_TRT}", "1.15x [1.10x, 1.20x]", report.HOLDS),
        (f"transformer: {CLAIM_TRT}", "1.00x [0.98x, 1.02x]", report.INCONCLUSIVE),
        (f"cnn: {CLAIM_TRT}", "0.90x [0.85x, 0.95x]", report.FAILS),
    ]
    assert got[0][3] == "at batch 8" and got[1][3].endswith("at batch 256")


def test_trtexec_commands_rebuild_the_sweep_and_study_engines():
    commands = lab.trtexec_commands("resnet18", "small", study_batches=(1, 8), max_batch=16, wide_opt=4)
    assert len(commands) == 5 and all(c.startswith("trtexec --onnx=resnet18_small_fp16.onnx ") for c in commands)
    assert "--optShapes=input:64x" in commands[0] and "--maxShapes=input:256x" in commands[0]
    assert "--optShapes=input:4x" in commands[3] and "--optShapes=input:8x" in commands[4]
    assert commands[4].endswith("--shapes=input:8x3x64x64")


# -- the backends themselves -----------------------------------------------------------------------------

def _make_input(batch):
    return models.example_input("resnet18", batch, "small")


def test_cpu_runners_agree_and_carry_their_backend(tmp_path):
    paths, err = onnx_tools.export_zoo_pair("resnet18", "small", tmp_path)
    assert err < 1e-4 and paths["fp32"].name == "resnet18_small_fp32.onnx"
    rs = lab.make_runners("resnet18", "small", paths) if not torch.cuda.is_available() else [
        runners.TorchEagerRunner(models.build("resnet18", "small"), _make_input, device="cpu", precision="fp32"),
        runners.OnnxRuntimeRunner(paths["fp32"], _make_input)]
    labels = [r.label for r in rs]
    assert labels == ["PyTorch eager (cpu, fp32)", "ONNX Runtime CPU (cpu, fp32)"]
    errors = lab.check_outputs(rs, "resnet18", "small", batch=3)
    assert all(e <= checks.tolerance("fp32", "model") for e in errors.values())
    m = rs[1].measure(2, warmup_ms=5, measure_ms=20)
    assert m.backend == labels[1] and m.batch_size == 2 and rs[1].prepare_seconds[2] >= 0


def test_the_onnx_runtime_runner_makes_each_batch_sizes_feed_once(tmp_path):
    paths, _ = onnx_tools.export_zoo_pair("resnet18", "small", tmp_path)
    made = []
    r = runners.OnnxRuntimeRunner(paths["fp32"], lambda b: made.append(b) or _make_input(b))
    for batch in (1, 2, 1, 2):   # a sweep's passes prepare every size again
        r.prepare(batch)
    assert made == [1, 2] and r.feed["input"].shape[0] == 2
    r.prepare(1)
    assert r.feed["input"].shape[0] == 1 and (r.feed["input"] == _make_input(1).numpy()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_runners_are_fp16_and_match_fp32(tmp_path):
    paths, _ = onnx_tools.export_zoo_pair("resnet18", "small", tmp_path)
    assert set(paths) == {"fp32", "fp16"}
    rs = lab.make_runners("resnet18", "small", paths, with_compile=False)
    assert rs[0].label == "PyTorch eager (cuda, fp16, channels_last)" and all(r.precision == "fp16" for r in rs)
    errors = lab.check_outputs(rs, "resnet18", "small", batch=2)
    assert all(e <= checks.tolerance("fp16", "model") for e in errors.values())


@pytest.mark.skipif(env.has("tensorrt"), reason="checks the message on machines without TensorRT")
def test_opt_profile_study_says_it_needs_tensorrt(tmp_path):
    with pytest.raises(env.RequirementError, match="TensorRT"):
        lab.opt_profile_study("resnet18", "small", tmp_path / "missing.onnx", [1], 8, 4)
