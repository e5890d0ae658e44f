"""common.labs.lab01_batching: the backends a machine sweeps, checked against FP32, and the lab's claims
driven through every branch with synthetic sweep rows (GPU, CPU, TensorRT or not)."""

from types import SimpleNamespace

import pytest
import torch

from common import checks, env, models, report, runners
from common import onnx as onnx_tools
from common.labs import lab01_batching as lab

EAGER_GPU = SimpleNamespace(label="PyTorch eager (cuda, fp16, channels_last)", backend="PyTorch eager")
COMPILED_GPU = SimpleNamespace(label="torch.compile (default) (cuda, fp16, channels_last)",
                               backend="torch.compile (default)")
EAGER_CPU = SimpleNamespace(label="PyTorch eager (cpu, fp32)", backend="PyTorch eager")
ORT_CPU = SimpleNamespace(label="ONNX Runtime CPU (cpu, fp32)", backend="ONNX Runtime CPU")
GPU_BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
# resnet50 on an H100 (PyTorch eager, FP16): host-bound and noisy up to the knee, steady past it
H100_LATENCY_MS = [6.677, 5.478, 5.326, 6.019, 7.265, 7.762, 7.471, 9.841, 18.65]
H100_SPREAD_PCT = [24.25, 67.48, 25.77, 59.97, 2.456, 2.095, 0.3157, 0.04098, 0.03243]


def sweep_rows(model, runner, batches, latency_ms, spread_pct, unit="img"):
    """Rows as sweeps.batch_sweep writes them, with the fields the claims read."""
    return [{"model": model, "backend": runner.label, "batch": b, "latency_ms": ms, "spread_pct": spread,
             f"throughput_{unit}_per_s": b / (ms / 1e3)} for b, ms, spread in zip(batches, latency_ms, spread_pct)]


def outcome(lab_report):
    return [(c.claim, c.measured, c.status, c.why) for c in lab_report.claims]


def test_batching_claims_on_a_gpu_as_measured_on_an_h100():
    rows = sweep_rows("resnet50", EAGER_GPU, GPU_BATCHES, H100_LATENCY_MS, H100_SPREAD_PCT)
    rows += sweep_rows("resnet50", COMPILED_GPU, [1, 256], [4.676, 10.31], [3.238, 0.2642])
    got = outcome(lab.batching_claims(rows, {"resnet50": [EAGER_GPU, COMPILED_GPU]}, {"resnet50": "img"},
                                      batches=GPU_BATCHES, has_gpu=True))
    assert got == [
        ("resnet50: throughput at the best batch is at least 10x batch 1 (PyTorch eager)", "91.7x at batch 256",
         report.HOLDS, ""),
        ("resnet50: throughput saturates before batch 256 (PyTorch eager)", "knee at batch 128", report.HOLDS,
         "80% of the best throughput reached there"),
        ("resnet50: past the knee, medians repeat within 3% between the two passes (PyTorch eager)", "worst 0.03%",
         report.HOLDS, "at batch 256"),
        ("resnet50: up to the knee, where the host sets the pace, medians vary more between passes", "worst 67.5%",
         report.HOLDS, "at batch 2"),
        ("resnet50: torch.compile is faster than eager at batch 256", "1.81x", report.HOLDS,
         "run-to-run spread 0.3%"),
    ]


def test_batching_claims_that_do_not_hold_on_a_gpu():
    # gains 4x only, noisy past the knee and steady below it; torch.compile within the noise
    latency = [1.0, 1.0, 1.0, 2.0, 4.0]
    rows = sweep_rows("transformer", EAGER_GPU, [1, 2, 4, 8, 16], latency, [1.0, 1.0, 2.0, 5.0, 4.0], unit="seq")
    rows += sweep_rows("transformer", COMPILED_GPU, [1, 16], [0.9, 3.9], [1.0, 3.0], unit="seq")
    got = {c.claim: (c.measured, c.status, c.why) for c in lab.batching_claims(
        rows, {"transformer": [EAGER_GPU, COMPILED_GPU]}, {"transformer": "seq"}, batches=[1, 2, 4, 8, 16],
        has_gpu=True).claims}
    assert got == {
        "transformer: throughput at the best batch is at least 10x batch 1 (PyTorch eager)":
            ("4.0x at batch 4", report.FAILS, ""),
        "transformer: throughput saturates before batch 16 (PyTorch eager)":
            ("knee at batch 4", report.HOLDS, "80% of the best throughput reached there"),
        "transformer: past the knee, medians repeat within 3% between the two passes (PyTorch eager)":
            ("worst 5.00%", report.FAILS, "at batch 8"),
        "transformer: up to the knee, where the host sets the pace, medians vary more between passes":
            ("worst 2.0%", report.FAILS, "at batch 4"),
        "transformer: torch.compile is faster than eager at batch 16": ("1.03x", report.FAILS, "run-to-run spread 4.0%"),
    }


def test_a_curve_still_rising_at_the_largest_batch_has_no_saturated_points():
    # throughput doubles at every step: the knee is the largest batch, so nothing lies past it
    rows = sweep_rows("resnet50", EAGER_GPU, [1, 2, 4], [1.0, 1.0, 1.0], [5.0, 5.0, 5.0])
    got = outcome(lab.batching_claims(rows, {"resnet50": [EAGER_GPU]}, {"resnet50": "img"}, batches=[1, 2, 4],
                                      has_gpu=True))
    assert [(claim.split(": ", 1)[1], status) for claim, _, status, _ in got] == [
        ("throughput at the best batch is at least 10x batch 1 (PyTorch eager)", report.FAILS),
        ("throughput saturates before batch 4 (PyTorch eager)", report.FAILS),
        ("up to the knee, where the host sets the pace, medians vary more between passes", report.NOT_APPLICABLE),
        ("torch.compile is faster than eager at the largest batch", report.NOT_APPLICABLE),
    ]
    assert got[1][1] == "knee at batch 4"


def test_batching_claims_on_a_cpu():
    rows = sweep_rows("resnet50", EAGER_CPU, [1, 2, 4, 8, 16], [2.0, 3.0, 5.0, 9.0, 17.0], [1.0, 2.0, 1.0, 0.5, 0.4])
    rows += sweep_rows("resnet50", ORT_CPU, [1, 2, 4, 8, 16], [1.0] * 5, [1.0] * 5)
    got = outcome(lab.batching_claims(rows, {"resnet50": [EAGER_CPU, ORT_CPU]}, {"resnet50": "img"},
                                      batches=[1, 2, 4, 8, 16], has_gpu=False))
    assert got == [
        ("resnet50: throughput at the best batch is at least 1.5x batch 1 (PyTorch eager)", "1.9x at batch 16",
         report.HOLDS, ""),
        ("resnet50: throughput saturates before batch 16 (PyTorch eager)", "knee at batch 4", report.HOLDS,
         "80% of the best throughput reached there"),
        ("resnet50: past the knee, medians repeat within 3% between the two passes (PyTorch eager)", "worst 0.50%",
         report.HOLDS, "at batch 8"),
        ("resnet50: up to the knee, where the host sets the pace, medians vary more between passes", "-",
         report.NOT_APPLICABLE, "on a CPU the host does all the work: no launch-bound regime to compare"),
        ("resnet50: torch.compile is faster than eager at the largest batch", "-", report.NOT_APPLICABLE,
         "torch.compile is swept on a GPU only (its compile time dominates at CPU scale)"),
    ]


def machine(**kwargs):
    return env.Environment(python="3.11", os="Linux", cpu="x86_64", cpu_count=8, torch="2.5", **kwargs)


def test_tensorrt_claims_not_applicable_say_what_is_missing():
    lab_report = report.LabReport("01_batching")
    assert lab.tensorrt_claims(None, machine(cuda_available=False), lab_report) is lab_report
    claim = "a profile whose opt matches the batch is faster than one wide profile at some batch"
    assert outcome(lab_report) == [(claim, "-", report.NOT_APPLICABLE, "needs TensorRT: not installed")]
    no_gpu = lab.tensorrt_claims(None, machine(cuda_available=False, tensorrt="11.4.0")).claims[0]
    assert (no_gpu.status, no_gpu.why) == (report.NOT_APPLICABLE, "needs TensorRT: no GPU")


def study(*rows):
    return [{"batch": b, "speedup": speedup, "significant": significant} for b, speedup, significant in rows]


def test_tensorrt_claims_hold_only_for_a_significant_gain():
    h200 = machine(cuda_available=True, gpu_name="NVIDIA H200", compute_capability=(9, 0), tensorrt="11.4.0")
    studies = {
        "resnet50": study((1, 1.02, False), (8, 1.15, True), (256, 1.01, False)),
        "transformer": study((1, 1.3, False), (8, 0.9, True), (256, 1.0, False)),   # only noise, and a loss
    }
    got = outcome(lab.tensorrt_claims(studies, h200))
    assert got == [
        ("resnet50: a profile whose opt matches the batch is faster than one wide profile at some batch", "1.15x",
         report.HOLDS, "at batch 8"),
        ("transformer: a profile whose opt matches the batch is faster than one wide profile at some batch", "1.30x",
         report.FAILS, "at batch 1"),
    ]


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
