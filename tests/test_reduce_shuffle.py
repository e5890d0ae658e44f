"""common.reduce_shuffle (lab 06): reduction cases and their byte counts, PyTorch and ONNX Runtime
reductions against FP64, rate comparisons, storage sharing of shuffles, and the shuffle micro-graphs."""

import numpy as np
import pytest
import torch

from common import onnx as onnx_tools
from common import reduce_shuffle as rs

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SMALL_NCHW, SMALL_MATRIX = (2, 8, 6, 5), (12, 10)


def test_cases_cover_short_and_long_last_axes_and_transposes():
    cases = rs.reduce_cases((4, 16, 7, 7), (32, 64))
    assert len({c.name for c in cases}) == len(cases) == 9
    assert [c.axis_length for c in cases if c.is_last_axis] == [7, 49, 64]
    transposed = [c for c in cases if c.transpose_first]
    assert [(c.label, c.dim) for c in transposed] == [("NCHW", 1), ("matrix", 0)]
    nchw_c = rs.ReduceCase("NCHW", (4, 16, 7, 7), 1)
    assert nchw_c.output_shape == (4, 7, 7)
    assert nchw_c.useful_bytes(2) == (4 * 16 * 49 + 4 * 49) * 2
    assert transposed[0].moved_bytes(2) == nchw_c.useful_bytes(2) + 2 * 4 * 16 * 49 * 2


@pytest.mark.parametrize("case", rs.reduce_cases(SMALL_NCHW, SMALL_MATRIX), ids=lambda c: c.short_name)
def test_torch_and_ort_reductions_match_fp64(case, tmp_path):
    x = rs.make_input(case.shape, device="cpu", dtype=torch.float32)
    torch_reduce = rs.TorchReduce(case, x)
    assert tuple(torch_reduce().shape) == case.output_shape
    assert torch_reduce.reference_error() <= rs.TOLERANCE[torch.float32]
    ort_reduce = rs.OrtReduce(case, x.numpy(), tmp_path)
    assert ort_reduce().shape == case.output_shape
    assert ort_reduce.reference_error() <= rs.TOLERANCE[torch.float32]
    ops = onnx_tools.node_counts(rs.reduce_sum_model(case))
    assert ops == ({"Transpose": 1, "ReduceSum": 1} if case.transpose_first else {"ReduceSum": 1})


def test_torch_reduce_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="not the case's"):
        rs.TorchReduce(rs.ReduceCase("m", (3, 4), 0), torch.zeros(4, 3))


def test_measure_reductions_reports_bandwidth_against_the_ceiling():
    case = rs.ReduceCase("m", (64, 128), 1)
    reduce = rs.TorchReduce(case, rs.make_input(case.shape, device="cpu", dtype=torch.float32))
    rows, runs = rs.measure_reductions([reduce], backend="test", device="cpu", copy_gbps=10.0,
                                       warmup_ms=1, measure_ms=5)
    assert len(runs[case.name]) == 2
    row = rows[0]
    assert row["GB_per_s"] == pytest.approx(case.useful_bytes(4) / (row["median_ms"] / 1e3) / 1e9)
    assert row["pct_of_copy"] == pytest.approx(10 * row["GB_per_s"])


def test_compare_rates_uses_bandwidth_and_spread():
    rows = [{"backend": "b", "case": "w", "GB_per_s": 100.0, "spread_pct": 5.0},
            {"backend": "b", "case": "h", "GB_per_s": 400.0, "spread_pct": 2.0},
            {"backend": "b", "case": "c", "GB_per_s": 103.0, "spread_pct": 4.0}]
    faster = rs.compare_rates(rows, "w", "h", "b")
    assert faster.ratio == pytest.approx(4.0) and faster.significant
    assert not rs.compare_rates(rows, "w", "c", "b").significant
    assert "noise" in rs.compare_rates(rows, "w", "c", "b").verdict()
    with pytest.raises(KeyError, match="no row"):
        rs.compare_rates(rows, "w", "missing", "b")
    assert rs.copy_time_ms(10**9, 2.0) == pytest.approx(1000.0)


def test_views_share_storage_and_real_transposes_copy():
    x = rs.make_input(SMALL_NCHW, device="cpu", dtype=torch.float32)
    facts = {f["shuffle"]: f for f in rs.storage_facts(x, rs.shuffle_cases(groups=2))}
    shared = [name for name, f in facts.items() if f["shares_storage"]]
    assert len(shared) == 4 and all(facts[name]["is_view"] for name in shared)
    assert not facts["permute to NHWC (a strided view)"]["contiguous"]
    assert not facts["channel shuffle, 2 groups"]["shares_storage"]
    assert not facts["permute to NHWC, .contiguous()"]["shares_storage"]
    q, q_heads, k = rs.heads_matmul_operands(2, 6, 3, 4, device="cpu", dtype=torch.float32)
    assert torch.equal(q.permute(0, 2, 1, 3), q_heads)
    assert not rs.shares_storage(q, q.permute(0, 2, 1, 3).reshape(6, 6, 4))
    assert torch.allclose(torch.matmul(q.permute(0, 2, 1, 3), k), torch.matmul(q_heads, k))


def test_measure_shuffles_prices_views_below_copies():
    x = rs.make_input((8, 64, 32, 32), device="cpu", dtype=torch.float32)
    cases = [c for c in rs.shuffle_cases() if c.name.startswith(("flatten", "permute to NHWC, "))]
    rows = {r["shuffle"]: r for r in rs.measure_shuffles(x, cases, backend="test", device="cpu", copy_gbps=10.0,
                                                          warmup_ms=1, measure_ms=10)}
    assert rows["flatten(start_dim=1)"]["shares_storage"]
    assert rows["flatten(start_dim=1)"]["median_ms"] < rows["permute to NHWC, .contiguous()"]["median_ms"]


@pytest.mark.parametrize("kind", rs.SHUFFLE_GRAPHS)
def test_shuffle_graphs_compute_their_reference(kind, tmp_path):
    paths = rs.save_shuffle_graphs((2, 8, 3, 3), tmp_path)
    x = np.random.default_rng(0).standard_normal((2, 8, 3, 3)).astype(np.float32)
    assert np.array_equal(onnx_tools.ort_run(paths[kind], x), rs.shuffle_reference(kind, x))
    expected = {"Relu": 2, "Reshape": 1} if kind == "pure reshape" else {"Relu": 2, "Reshape": 2, "Transpose": 1}
    assert onnx_tools.node_counts(paths[kind]) == expected


def test_size1_transpose_keeps_memory_order_and_channel_shuffle_does_not():
    x = np.arange(2 * 8 * 3 * 3, dtype=np.float32).reshape(2, 8, 3, 3)
    assert np.array_equal(rs.shuffle_reference("size-1 transpose", x), x)
    assert not np.array_equal(rs.shuffle_reference("channel shuffle", x), x)
    with pytest.raises(ValueError, match="groups"):
        rs.shuffle_graph("channel shuffle", (1, 6, 2, 2), groups=4)
    with pytest.raises(ValueError, match="kind must be"):
        rs.shuffle_graph("rotate", (1, 8, 2, 2))


def test_grouped_bar_plot_writes_png_and_csv(tmp_path):
    rows = [{"backend": b, "case": c, "pct": v} for b, c, v in [("a", "x", 10.0), ("a", "y", 20.0), ("b", "x", 5.0)]]
    png = rs.grouped_bar_plot(rows, label="case", value="pct", series="backend", title="t", ylabel="%",
                              path=tmp_path / "fig", reference=100.0, show=False)
    assert png.exists() and png.with_suffix(".csv").read_text().count("\n") == 4


@needs_gpu
def test_gpu_fp16_reduction_and_kernel_counts():
    case = rs.ReduceCase("NCHW", (8, 64, 56, 56), 3)
    x = rs.make_input(case.shape, device="cuda", dtype=torch.float16)
    assert rs.TorchReduce(case, x).reference_error() <= rs.TOLERANCE[torch.float16]
    assert rs.cuda_kernels_launched(lambda: x.reshape(8, 64, -1)) == 0
    assert rs.cuda_kernels_launched(lambda: x.permute(0, 2, 3, 1).contiguous()) >= 1
