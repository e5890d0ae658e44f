import math

import pytest
import torch

from common import models, runners, sweeps


def _make_input(batch):
    return models.example_input("resnet18", batch, "small")


def test_runner_rejects_unknown_precision():
    with pytest.raises(ValueError, match="precision"):
        runners.TorchEagerRunner(models.build("resnet18", "small"), _make_input, device="cpu", precision="int3")


def test_batch_sweep_rows_have_spread_and_throughput():
    r = runners.TorchEagerRunner(models.build("resnet18", "small"), _make_input, device="cpu", precision="fp32")
    rows = sweeps.batch_sweep([r], [1, 2], model="resnet18", unit="img", passes=2, measure_ms=20,
                              warmup_ms=5, progress=False)
    assert [row["batch"] for row in rows] == [1, 2]
    for row in rows:
        assert row["throughput_img_per_s"] == pytest.approx(row["batch"] / (row["latency_ms"] / 1e3))
        assert len(row["pass_medians_ms"]) == 2 and row["spread_pct"] >= 0
    text = sweeps.format_table(rows, ["backend", "batch", "latency_ms"])
    assert "PyTorch eager (cpu, fp32)" in text and len(text.splitlines()) == 4


def test_a_sweep_makes_each_batch_size_input_once_and_feeds_it_again_in_later_passes():
    made = []

    def counted(batch):
        made.append(batch)
        return _make_input(batch)

    r = runners.TorchEagerRunner(models.build("resnet18", "small"), counted, device="cpu", precision="fp32")
    sweeps.batch_sweep([r], [1, 2], model="resnet18", unit="img", passes=3, measure_ms=5, warmup_ms=1, progress=False)
    assert made == [1, 2]                               # was [1, 2] once per pass: a seeded input made anew
    first = r.x
    r.prepare(1)
    r.prepare(2)
    assert r.x is first and r.x.shape[0] == 2 and torch.equal(r.x, _make_input(2))


def test_scaling_finds_best_batch_and_knee():
    batches = [1, 2, 4, 8, 16, 32]
    linear_then_flat = [100, 200, 400, 790, 900, 950]
    s = sweeps.scaling(batches, linear_then_flat)
    assert (s.best_batch, s.knee_batch) == (32, 8)        # 790 >= 0.8 * 950
    assert s.gain_over_batch1 == pytest.approx(9.5)
    # Host-bound noise at small batches (a dip at 4) does not move the knee.
    noisy = [100, 210, 150, 420, 800, 950]
    assert sweeps.scaling(batches, noisy).knee_batch == 16
    assert sweeps.scaling([1, 2, 4], [10, 20, 40]).knee_batch == 4
    with pytest.raises(ValueError, match="batch 1"):
        sweeps.scaling([2, 4], [1, 2])


def test_rows_for_filters_on_every_field():
    rows = [{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 2, "b": 2}]
    assert sweeps.rows_for(rows, a=1, b=3) == [{"a": 1, "b": 3}]
    assert math.isnan(float("nan"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_runners_match_eager():
    model = models.build("resnet18", "small")
    eager = runners.TorchEagerRunner(model, _make_input, device="cuda", precision="fp16")
    graph = runners.TorchCudaGraphRunner(models.build("resnet18", "small"), _make_input, device="cuda",
                                         precision="fp16")
    for r in (eager, graph):
        r.prepare(4)
        r.run()
    assert torch.allclose(eager.output(), graph.output(), rtol=1e-2, atol=1e-2)
    assert graph.measure(4, warmup_ms=10, measure_ms=50).timer == "cuda-events"
