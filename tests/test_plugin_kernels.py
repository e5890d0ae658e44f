"""Lab 11 (plugins): the bias + GELU op's layouts, its CPU implementation and custom op, the
measurement helpers, and the plugin declarations; the Triton kernel through Triton's interpreter
where Triton is installed, and on the GPU where there is one."""

import importlib.util
from collections import Counter

import pytest
import torch

from common import bench
from common import plugin_kernels as pk
from common.trt import plugin_variants as pv

HAS_TRITON_MODULE = importlib.util.find_spec("triton") is not None
GPU_TRITON = torch.cuda.is_available() and HAS_TRITON_MODULE


def close(out, ref, tol=1e-5):
    return (out.float() - ref.float()).abs().max().item() <= tol


# -- layouts ---------------------------------------------------------------------------------------

def test_channel_pitch_pads_to_the_vector_width():
    assert [pk.channel_pitch(c, 8) for c in (1, 8, 12, 16)] == [8, 8, 16, 16]
    assert pk.channel_pitch(12) == 12
    with pytest.raises(ValueError):
        pk.channel_pitch(0, 8)


def test_storage_elements_count_the_padding():
    assert pk.storage_elements((2, 12, 3, 5)) == 2 * 12 * 15
    assert pk.storage_elements((2, 12, 3, 5), channels_last=True, vector=8) == 2 * 16 * 15
    with pytest.raises(ValueError, match="N x C x H x W"):
        pk.storage_elements((2, 12, 3))


def test_channel_of_follows_each_layout():
    shape = (1, 3, 2, 2)
    assert [pk.channel_of(i, shape) for i in range(12)] == [0] * 4 + [1] * 4 + [2] * 4
    assert [pk.channel_of(i, shape, channels_last=True) for i in range(6)] == [0, 1, 2, 0, 1, 2]
    hwc8 = [pk.channel_of(i, shape, channels_last=True, vector=8) for i in range(16)]
    assert hwc8[:8] == [0, 1, 2, None, None, None, None, None] and hwc8[8:11] == [0, 1, 2]


def test_channel_last_storage_round_trip_and_zero_padding():
    x, _ = pk.make_inputs((2, 5, 3, 4), device="cpu", dtype=torch.float32)
    storage = pk.to_channel_last_storage(x, vector=8)
    assert storage.numel() == pk.storage_elements(tuple(x.shape), True, 8)
    assert torch.equal(pk.from_channel_last_storage(storage, tuple(x.shape), 8), x)
    assert storage.view(2, 3, 4, 8)[..., 5:].abs().sum() == 0


# -- the op on the CPU -----------------------------------------------------------------------------

@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("chunk", pk.CPU_CHUNKS)
def test_cpu_bias_gelu_matches_the_reference_and_keeps_the_layout(channels_last, chunk):
    x, bias = pk.make_inputs((3, 10, 9, 11), device="cpu", dtype=torch.float32, channels_last=channels_last)
    out = pk.cpu_bias_gelu(x, bias, chunk_elements=chunk)
    assert close(out, pk.reference(x, bias))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)


def test_cpu_bias_gelu_writes_out_and_refuses_mixed_layouts():
    x, bias = pk.make_inputs((2, 4, 5, 5), device="cpu", dtype=torch.float32)
    out = torch.full_like(x, float("nan"))
    assert pk.cpu_bias_gelu(x, bias, out) is out and close(out, pk.reference(x, bias))
    with pytest.raises(ValueError, match="both"):
        pk.cpu_bias_gelu(x, bias, torch.empty_like(x, memory_format=torch.channels_last))


def test_composed_op_is_bias_then_exact_gelu():
    x, bias = pk.make_inputs((1, 2, 1, 1), device="cpu", dtype=torch.float32)
    v = x + bias.view(1, -1, 1, 1)
    assert close(pk.composed_bias_gelu(x, bias), 0.5 * v * (1 + torch.erf(v / 2 ** 0.5)))


def test_custom_op_runs_the_cpu_kernel_and_passes_opcheck():
    op = pk.bias_gelu_op()
    for channels_last in (False, True):
        x, bias = pk.make_inputs((2, 6, 4, 4), device="cpu", dtype=torch.float32, channels_last=channels_last)
        out = op(x, bias)
        assert close(out, pk.reference(x, bias))
        assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        torch.library.opcheck(op, (x, bias))


def test_bytes_moved_counts_read_write_and_bias():
    assert pk.bytes_moved((2, 3, 4, 5), 2) == (2 * 120 + 3) * 2


# -- candidates, verification and measurement helpers ------------------------------------------------

def test_verify_flags_a_wrong_implementation():
    x, bias = pk.make_inputs((1, 4, 3, 3), device="cpu", dtype=torch.float32)
    rows = pk.verify({"right": lambda: pk.composed_bias_gelu(x, bias),
                      "no bias": lambda: torch.nn.functional.gelu(x)}, x, bias)
    assert [r["ok"] for r in rows] == [True, False]
    assert rows[0]["tolerance"] == pk.TOLERANCE[torch.float32] and rows[0]["dtype"] == "float32"


def test_cpu_tactic_and_format_candidates_compute_the_op():
    x, bias = pk.make_inputs((2, 8, 6, 6), device="cpu", dtype=torch.float32)
    tactics = pk.tactic_candidates(x, bias, torch.empty_like(x))
    assert list(tactics) == [pk.cpu_chunk_label(c) for c in pk.CPU_CHUNKS]
    x_cl = x.contiguous(memory_format=torch.channels_last)
    formats = pk.format_candidates(x_cl, bias)
    assert list(formats) == [pk.DECLARES_LAYOUT, pk.FP32_LINEAR_ONLY]
    for fn in [*tactics.values(), *formats.values()]:
        assert close(fn(), pk.reference(x, bias))
    assert formats[pk.FP32_LINEAR_ONLY]().is_contiguous(memory_format=torch.channels_last)


def test_cpu_overhead_candidates_are_the_cpu_call_paths():
    x, bias = pk.make_inputs((1, 4, 4, 4), device="cpu", dtype=torch.float32)
    configs = pk.overhead_candidates(x, bias, with_compile=False)
    assert list(configs) == [pk.COMPOSED, pk.CPU_DIRECT, pk.CUSTOM_OP]
    for config in configs.values():
        assert close(config["fn"](), pk.reference(x, bias))


def _measurement(name, latency_ms, host_ms):
    return bench.Measurement(name=name, backend="test", device="cpu", batch_size=1,
                             latency_ms=bench.Stats.of([latency_ms]), host_ms=bench.Stats.of([host_ms]),
                             wall_ms_per_iter=latency_ms, iterations=1, warmup_ms=0.0, timer="perf_counter")


def test_speed_rows_best_worst_and_host_comparison():
    runs = {"slow": [_measurement("slow", 2.0, 0.010), _measurement("slow", 2.2, 0.011)],
            "fast": [_measurement("fast", 1.0, 0.030), _measurement("fast", 1.02, 0.031)]}
    rows = {r["config"]: r for r in pk.speed_rows(runs, nbytes=1_000_000, copy_gbps=2.0)}
    assert rows["fast"]["x_slower_than_best"] == 1.0 and rows["slow"]["x_slower_than_best"] == pytest.approx(2.07 / 1.01, rel=0.02)
    assert rows["fast"]["gb_per_s"] == pytest.approx(1e6 / 1.01e-3 / 1e9)
    assert rows["fast"]["pct_of_copy"] == pytest.approx(100 * rows["fast"]["gb_per_s"] / 2.0)
    assert pk.best_and_worst(runs) == ("fast", "slow")
    host = pk.host_comparison(runs, "slow", "fast")      # on host time "fast" is the slower one
    assert host.speedup < 1 and host.significant
    overhead = {r["call path"]: r for r in pk.overhead_rows(runs)}
    assert overhead["slow"]["host_us_per_call"] == pytest.approx(10.5)


def test_tactics_are_numbered_like_plugin_tactics_and_share_the_autotuner_options():
    assert [t.id for t in pk.TACTICS] == list(range(1, len(pk.TACTICS) + 1))
    assert all(t.block % (32 * t.num_warps) == 0 for t in pk.TACTICS)
    assert pk.DEFAULT_TACTIC in pk.TACTICS
    assert pk.TACTICS[0].launch_options() == {"BLOCK": 128, "num_warps": 1, "num_ctas": 1, "num_stages": 3}


# -- the plugin declarations (no TensorRT needed) ----------------------------------------------------

def test_expand_declared_pairs_options_position_by_position():
    combos = pv.expand_declared("FP16, FP16, FP16", "LINEAR|HWC8, LINEAR, LINEAR|HWC8")
    assert combos == [(("FP16",) * 3, ("LINEAR", "LINEAR", "LINEAR")), (("FP16",) * 3, ("HWC8", "LINEAR", "HWC8"))]
    assert pv.expand_declared("FP32|FP16, FP32|FP16", "LINEAR") == [
        (("FP32", "FP32"), ("LINEAR", "LINEAR")), (("FP16", "FP16"), ("LINEAR", "LINEAR"))]
    with pytest.raises(ValueError, match="paired"):
        pv.expand_declared("FP16, FP16", "LINEAR|HWC8|HWC, LINEAR|HWC8")
    with pytest.raises(ValueError):
        pv.expand_declared("FP16*FP32, FP16", "LINEAR")


def test_declared_formats_are_ones_the_kernel_reads():
    for declared in pv.DECLARED.values():
        for types, formats in declared:
            for type_row, format_row in pv.expand_declared(types, formats):
                assert len(set(type_row)) == 1, "x, bias and y share one type"
                assert format_row[1] == "LINEAR", "the bias is a vector"
                assert format_row[0] == format_row[2] and format_row[0] in ("LINEAR", *pv.CHANNEL_LAST_VECTOR)
                if format_row[0] == "HWC8":
                    assert type_row[0] == "FP16", "HWC8 is an FP16/BF16 format"
    only = pv.expand_declared(*pv.DECLARED[pv.FP32_LINEAR_PLUGIN][0])
    assert only == [(("FP32",) * 3, ("LINEAR",) * 3)]


def test_tactic_value_and_tactics_timed():
    assert pv.tactic_value("0x0000000000000003") == 3 and pv.tactic_value(5) == 5 and pv.tactic_value(None) is None
    built = pv.PluginEngine(name="e", plugin=pv.MULTI_FORMAT_PLUGIN, aot=False, engine=None, plan=b"", build_seconds=0.0,
                            build_calls={(pv.MULTI_FORMAT_PLUGIN, 2, "HALF", "LINEAR"): 3,
                                         (pv.MULTI_FORMAT_PLUGIN, 2, "HALF", "HWC8"): 4,
                                         (pv.MULTI_FORMAT_PLUGIN, 1, "HALF", "HWC8"): 1,
                                         (pv.FP32_LINEAR_PLUGIN, 3, "FLOAT", "LINEAR"): 9})
    assert pv.tactics_timed(built) == {1: 1, 2: 7}


def test_network_weights_are_seeded_and_shaped():
    a, b = pv.network_weights(8, seed=1), pv.network_weights(8, seed=1)
    assert all((a[k] == b[k]).all() for k in a)
    assert a["conv1"].shape == (8, 8, 3, 3) and a["bias"].shape == (8,)
    assert len({file for *_, file in pv.VARIANTS.values()}) == len(pv.VARIANTS)


def test_calls_counter_starts_empty_without_tensorrt():
    assert isinstance(pv.CALLS, Counter)


# -- the Triton kernel, through Triton's CPU interpreter ---------------------------------------------

@pytest.fixture
def interpreted(monkeypatch):
    """The kernel as Triton's interpreter runs it (numpy on CPU tensors)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    pk.triton_kernel.cache_clear()
    yield
    pk.triton_kernel.cache_clear()


@pytest.mark.skipif(not HAS_TRITON_MODULE, reason="Triton is not installed")
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_kernel_in_the_interpreter_every_tactic(interpreted, channels_last):
    x, bias = pk.make_inputs((2, 12, 5, 7), device="cpu", dtype=torch.float32, channels_last=channels_last)
    y = torch.empty_like(x)
    for tactic in pk.TACTICS:
        y.fill_(float("nan"))
        pk.launch(x, bias, y, tactic, channels_last=channels_last)
        assert close(y, pk.reference(x, bias)), tactic.label


@pytest.mark.skipif(not HAS_TRITON_MODULE, reason="Triton is not installed")
def test_triton_kernel_in_the_interpreter_reads_padded_hwc8(interpreted):
    shape = (2, 12, 3, 5)
    x, bias = pk.make_inputs(shape, device="cpu", dtype=torch.float32)
    storage = pk.to_channel_last_storage(x, vector=8)
    out = torch.empty_like(storage)
    pk._launch(storage, bias, out, shape, True, 8, pk.TACTIC_BY_ID[2])
    assert close(pk.from_channel_last_storage(out, shape, 8), pk.reference(x, bias))


def test_launch_refuses_mismatched_layouts():
    x, bias = pk.make_inputs((1, 4, 2, 2), device="cpu", dtype=torch.float32)
    with pytest.raises(ValueError, match="channels_last"):
        pk.launch(x, bias, torch.empty_like(x), channels_last=True)


# -- on the GPU ----------------------------------------------------------------------------------------

gpu = pytest.mark.skipif(not GPU_TRITON, reason="needs an NVIDIA GPU and Triton")


@gpu
def test_gpu_every_tactic_layout_and_call_path_matches():
    x, bias = pk.make_inputs((2, 64, 14, 14), device="cuda", dtype=torch.float16)
    reference = pk.reference(x, bias)
    y = torch.empty_like(x)
    for tactic in pk.TACTICS:
        pk.launch(x, bias, y, tactic)
        assert close(y, reference, 2e-2), tactic.label
    x_cl = x.contiguous(memory_format=torch.channels_last)
    rows = pk.verify({**pk.format_candidates(x_cl, bias),
                      "op": lambda: pk.bias_gelu_op()(x, bias),
                      "jit": pk.jit_style_call(x, bias, torch.empty_like(x), torch.cuda.Stream().cuda_stream)}, x, bias)
    assert all(r["ok"] for r in rows), rows


@gpu
def test_gpu_autotune_choice_is_one_of_the_tactics():
    x, bias = pk.make_inputs((4, 64, 28, 28), device="cuda", dtype=torch.float16)
    chosen, timings = pk.autotune_choice(x, bias)
    assert chosen in pk.TACTICS and set(timings) == {t.id for t in pk.TACTICS}
    assert timings[chosen.id] == min(timings.values())


@gpu
def test_gpu_overhead_candidates_compute_the_op():
    x, bias = pk.make_inputs((1, 64, 16, 16), device="cuda", dtype=torch.float16)
    configs = pk.overhead_candidates(x, bias, with_compile=False)
    assert pk.GRAPH_REPLAY in configs and pk.JIT_CALLBACK in configs
    runs = pk.measure(configs, device="cuda", passes=2, warmup_ms=5, measure_ms=10)
    assert all(len(ms) == 2 for ms in runs.values())


@gpu
def test_gpu_ahead_of_time_compile_gives_ptx():
    compiled = pk.compile_ahead_of_time("fp16", True, pk.DEFAULT_TACTIC)
    assert compiled.metadata.name in compiled.asm["ptx"] and compiled.metadata.num_warps == pk.DEFAULT_TACTIC.num_warps
