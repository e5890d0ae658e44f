"""Lab 11 (plugins): the bias + GELU op's layouts, its CPU implementation and custom op, the
measurement helpers, the plugin declarations and their TensorRT-version guards (with stand-in
modules), and every branch of the claims; the Triton kernel through Triton's interpreter where
Triton is installed, and on the GPU where there is one."""

import importlib.util
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from common import bench, checks, report
from common.labs import lab11_plugins as lab
from common.labs.lab11_plugins import kernels, trt_plugins
from common.labs.lab11_plugins.claims import CPU_ONLY

HAS_TRITON_MODULE = importlib.util.find_spec("triton") is not None
GPU_TRITON = torch.cuda.is_available() and HAS_TRITON_MODULE


def close(out, ref, tol=1e-5):
    return (out.float() - ref.float()).abs().max().item() <= tol


# -- layouts ---------------------------------------------------------------------------------------

def test_channel_pitch_pads_to_the_vector_width():
    assert [lab.channel_pitch(c, 8) for c in (1, 8, 12, 16)] == [8, 8, 16, 16]
    assert lab.channel_pitch(12) == 12
    with pytest.raises(ValueError):
        lab.channel_pitch(0, 8)


def test_storage_elements_count_the_padding():
    assert lab.storage_elements((2, 12, 3, 5)) == 2 * 12 * 15
    assert lab.storage_elements((2, 12, 3, 5), channels_last=True, vector=8) == 2 * 16 * 15
    with pytest.raises(ValueError, match="N x C x H x W"):
        lab.storage_elements((2, 12, 3))


def test_channel_of_follows_each_layout():
    shape = (1, 3, 2, 2)
    assert [lab.channel_of(i, shape) for i in range(12)] == [0] * 4 + [1] * 4 + [2] * 4
    assert [lab.channel_of(i, shape, channels_last=True) for i in range(6)] == [0, 1, 2, 0, 1, 2]
    hwc8 = [lab.channel_of(i, shape, channels_last=True, vector=8) for i in range(16)]
    assert hwc8[:8] == [0, 1, 2, None, None, None, None, None] and hwc8[8:11] == [0, 1, 2]


def test_channel_last_storage_round_trip_and_zero_padding():
    x, _ = lab.make_inputs((2, 5, 3, 4), device="cpu", dtype=torch.float32)
    storage = lab.to_channel_last_storage(x, vector=8)
    assert storage.numel() == lab.storage_elements(tuple(x.shape), True, 8)
    assert torch.equal(lab.from_channel_last_storage(storage, tuple(x.shape), 8), x)
    assert storage.view(2, 3, 4, 8)[..., 5:].abs().sum() == 0


# -- the op on the CPU -----------------------------------------------------------------------------

@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("chunk", lab.CPU_CHUNKS)
def test_cpu_bias_gelu_matches_the_reference_and_keeps_the_layout(channels_last, chunk):
    x, bias = lab.make_inputs((3, 10, 9, 11), device="cpu", dtype=torch.float32, channels_last=channels_last)
    out = lab.cpu_bias_gelu(x, bias, chunk_elements=chunk)
    assert close(out, lab.reference(x, bias))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)


def test_cpu_bias_gelu_writes_out_and_refuses_mixed_layouts():
    x, bias = lab.make_inputs((2, 4, 5, 5), device="cpu", dtype=torch.float32)
    out = torch.full_like(x, float("nan"))
    assert lab.cpu_bias_gelu(x, bias, out) is out and close(out, lab.reference(x, bias))
    with pytest.raises(ValueError, match="both"):
        lab.cpu_bias_gelu(x, bias, torch.empty_like(x, memory_format=torch.channels_last))


def test_composed_op_is_bias_then_exact_gelu():
    x, bias = lab.make_inputs((1, 2, 1, 1), device="cpu", dtype=torch.float32)
    v = x + bias.view(1, -1, 1, 1)
    assert close(lab.composed_bias_gelu(x, bias), 0.5 * v * (1 + torch.erf(v / 2 ** 0.5)))


def test_custom_op_runs_the_cpu_kernel_and_passes_opcheck():
    op = lab.bias_gelu_op()
    for channels_last in (False, True):
        x, bias = lab.make_inputs((2, 6, 4, 4), device="cpu", dtype=torch.float32, channels_last=channels_last)
        out = op(x, bias)
        assert close(out, lab.reference(x, bias))
        assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        torch.library.opcheck(op, (x, bias))


def test_bytes_moved_counts_read_write_and_bias():
    assert lab.bytes_moved((2, 3, 4, 5), 2) == (2 * 120 + 3) * 2


# -- candidates, verification and measurement helpers ------------------------------------------------

def test_verify_flags_a_wrong_implementation():
    x, bias = lab.make_inputs((1, 4, 3, 3), device="cpu", dtype=torch.float32)
    rows = lab.verify({"right": lambda: lab.composed_bias_gelu(x, bias),
                      "no bias": lambda: torch.nn.functional.gelu(x)}, x, bias)
    assert [r["ok"] for r in rows] == [True, False]
    assert rows[0]["tolerance"] == checks.tolerance("fp32", "op") and rows[0]["dtype"] == "float32"


def test_cpu_tactic_and_format_candidates_compute_the_op():
    x, bias = lab.make_inputs((2, 8, 6, 6), device="cpu", dtype=torch.float32)
    tactics = lab.tactic_candidates(x, bias, torch.empty_like(x))
    assert list(tactics) == [lab.cpu_chunk_label(c) for c in lab.CPU_CHUNKS]
    x_cl = x.contiguous(memory_format=torch.channels_last)
    formats = lab.format_candidates(x_cl, bias)
    assert list(formats) == [lab.DECLARES_LAYOUT, lab.FP32_LINEAR_ONLY]
    for fn in [*tactics.values(), *formats.values()]:
        assert close(fn(), lab.reference(x, bias))
    assert formats[lab.FP32_LINEAR_ONLY]().is_contiguous(memory_format=torch.channels_last)


def test_cpu_overhead_candidates_are_the_cpu_call_paths():
    x, bias = lab.make_inputs((1, 4, 4, 4), device="cpu", dtype=torch.float32)
    configs = lab.overhead_candidates(x, bias, with_compile=False)
    assert list(configs) == [lab.COMPOSED, lab.CPU_DIRECT, lab.CUSTOM_OP]
    for config in configs.values():
        assert close(config["fn"](), lab.reference(x, bias))


def _measurement(name, latency_ms, host_ms):
    return bench.Measurement(name=name, backend="test", device="cpu", batch_size=1,
                             latency_ms=bench.Stats.of([latency_ms]), host_ms=bench.Stats.of([host_ms]),
                             wall_ms_per_iter=latency_ms, iterations=1, warmup_ms=0.0, timer="perf_counter")


def test_speed_rows_best_worst_and_host_ratio():
    runs = {"slow": [_measurement("slow", 2.0, 0.010), _measurement("slow", 2.2, 0.011)],
            "fast": [_measurement("fast", 1.0, 0.030), _measurement("fast", 1.02, 0.031)]}
    rows = {r["config"]: r for r in lab.speed_rows(runs, nbytes=1_000_000, copy_gbps=2.0)}
    assert rows["fast"]["x_slower_than_best"] == 1.0 and rows["slow"]["x_slower_than_best"] == pytest.approx(2.07 / 1.01, rel=0.02)
    assert rows["fast"]["gb_per_s"] == pytest.approx(1e6 / 1.01e-3 / 1e9) and rows["fast"]["timed_on"] == "event"
    assert rows["fast"]["pct_of_copy"] == pytest.approx(100 * rows["fast"]["gb_per_s"] / 2.0)
    assert rows["fast"]["regime"] == "cpu" and rows["fast"]["host_ms"] == pytest.approx(0.0305)
    assert lab.best_and_worst(runs) == ("fast", "slow")
    host = lab.host_ratio(runs, "slow", "fast")      # fast's host time as a multiple of slow's
    assert host.speedup == pytest.approx(0.0305 / 0.0105) and host.on == "host" and host.significant
    assert lab.host_words(host, "fast", "slow").startswith("fast: host time per call 2.90x the slow's (95% interval")
    overhead = {r["call path"]: r for r in lab.overhead_rows(runs, base="slow")}
    assert overhead["slow"]["host_us_per_call"] == pytest.approx(10.5) and overhead["slow"]["host time"] == "the reference"
    assert overhead["fast"]["host time"] == "2.90x the slow's"
    assert lab.times_text(0.4, "raw launch") == "0.40x the raw launch's (2.5x less)"


def test_speed_rows_and_bests_use_kernel_time_where_measured():
    def gpu(name, event_ms, kernel_ms):
        m = _measurement(name, event_ms, event_ms)
        return bench.Measurement(**{**m.__dict__, "device": "cuda",
                                    "kernel": bench.KernelTime(kernel_ms, kernel_ms, 0.0, 1, 5)})

    runs = {"host-bound op": [gpu("a", 0.073, 0.046), gpu("a", 0.074, 0.046)],
            "kernel": [gpu("b", 0.050, 0.048), gpu("b", 0.051, 0.048)]}
    rows = {r["config"]: r for r in lab.speed_rows(runs, nbytes=100_000_000, copy_gbps=4000.0)}
    assert rows["host-bound op"]["timed_on"] == "kernel" and rows["host-bound op"]["regime"] == "mixed"
    assert lab.best_and_worst(runs) == ("host-bound op", "kernel")    # by kernel time, not by events
    assert lab.device_comparison(runs["kernel"], runs["host-bound op"]).on == "kernel"


def test_format_traffic_counts_the_conversions_bytes():
    shape = (2, 8, 4, 4)
    fp16 = lab.format_traffic(shape, 2)
    n = 2 * 8 * 4 * 4
    assert fp16[lab.DECLARES_LAYOUT] == (2 * n + 8) * 2 and fp16[lab.FP32_LINEAR_ONLY] == 4 * n + 16 * n + 32
    assert fp16[lab.FP32_LINEAR_ONLY] / fp16[lab.DECLARES_LAYOUT] == pytest.approx(5.0, rel=0.01)   # FP16: ~5x
    fp32 = lab.format_traffic(shape, 4)
    assert fp32[lab.FP32_LINEAR_ONLY] / fp32[lab.DECLARES_LAYOUT] == pytest.approx(3.0, rel=0.02)   # FP32: ~3x
    runs = {lab.DECLARES_LAYOUT: _runs("d", 1.0, 1.0), lab.FP32_LINEAR_ONLY: _runs("c", 10.0, 10.0)}
    rows = {r["config"]: r for r in lab.format_bounds(runs, fp16, copy_gbps=1e-6)}
    bound = fp16[lab.FP32_LINEAR_ONLY] / 1e3 * 1e3
    assert rows[lab.FP32_LINEAR_ONLY]["bound_ms"] == pytest.approx(bound)
    assert rows[lab.FP32_LINEAR_ONLY]["pct_of_bound_speed"] == pytest.approx(100 * bound / 10.0)
    assert rows[lab.FP32_LINEAR_ONLY]["bytes_ratio"] == pytest.approx(5.0, rel=0.01)
    no_ceiling = lab.format_bounds(runs, fp16, copy_gbps=None)
    assert all(r["bound_ms"] != r["bound_ms"] for r in no_ceiling)   # NaN: no ceiling, no bound


def test_trtexec_lines_run_the_aot_plan_and_say_why_jit_has_none():
    lines = lab.trtexec_lines("plans")
    assert len(lines) == len(lab.VARIANTS)
    aot = next(line for line in lines if "(AOT)" in line.split(":")[0])
    assert "trtexec --loadEngine=plans/multi_format_aot.plan --dumpProfile --dumpLayerInfo" in aot
    from common.trt.trtexec import TRTEXEC_OPTIONS
    assert {"--loadEngine", "--dumpProfile", "--dumpLayerInfo"} <= TRTEXEC_OPTIONS
    assert sum("no trtexec equivalent" in line for line in lines) == 2


def test_tactics_are_numbered_like_plugin_tactics_and_share_the_autotuner_options():
    assert [t.id for t in lab.TACTICS] == list(range(1, len(lab.TACTICS) + 1))
    assert all(t.block % (32 * t.num_warps) == 0 for t in lab.TACTICS)
    assert lab.DEFAULT_TACTIC in lab.TACTICS
    assert lab.TACTICS[0].launch_options() == {"BLOCK": 128, "num_warps": 1, "num_ctas": 1, "num_stages": 3}


# -- the plugin declarations (no TensorRT needed) ----------------------------------------------------

def test_expand_declared_pairs_options_position_by_position():
    combos = lab.expand_declared("FP16, FP16, FP16", "LINEAR|HWC8, LINEAR, LINEAR|HWC8")
    assert combos == [(("FP16",) * 3, ("LINEAR", "LINEAR", "LINEAR")), (("FP16",) * 3, ("HWC8", "LINEAR", "HWC8"))]
    assert lab.expand_declared("FP32|FP16, FP32|FP16", "LINEAR") == [
        (("FP32", "FP32"), ("LINEAR", "LINEAR")), (("FP16", "FP16"), ("LINEAR", "LINEAR"))]
    with pytest.raises(ValueError, match="paired"):
        lab.expand_declared("FP16, FP16", "LINEAR|HWC8|HWC, LINEAR|HWC8")
    with pytest.raises(ValueError):
        lab.expand_declared("FP16*FP32, FP16", "LINEAR")


def test_declared_formats_are_ones_the_kernel_reads():
    for declared in lab.DECLARED.values():
        for types, formats in declared:
            for type_row, format_row in lab.expand_declared(types, formats):
                assert len(set(type_row)) == 1, "x, bias and y share one type"
                assert format_row[1] == "LINEAR", "the bias is a vector"
                assert format_row[0] == format_row[2] and format_row[0] in ("LINEAR", *lab.CHANNEL_LAST_VECTOR)
                if format_row[0] == "HWC8":
                    assert type_row[0] == "FP16", "HWC8 is an FP16/BF16 format"
    only = lab.expand_declared(*lab.DECLARED[lab.FP32_LINEAR_PLUGIN][0])
    assert only == [(("FP32",) * 3, ("LINEAR",) * 3)]


def test_tactic_value_and_tactics_timed():
    assert trt_plugins.tactic_value("0x0000000000000003") == 3 and trt_plugins.tactic_value(5) == 5 and trt_plugins.tactic_value(None) is None
    built = trt_plugins.PluginEngine(name="e", plugin=lab.MULTI_FORMAT_PLUGIN, aot=False, engine=None, plan=b"", build_seconds=0.0,
                            build_calls={(lab.MULTI_FORMAT_PLUGIN, 2, "HALF", "LINEAR"): 3,
                                         (lab.MULTI_FORMAT_PLUGIN, 2, "HALF", "HWC8"): 4,
                                         (lab.MULTI_FORMAT_PLUGIN, 1, "HALF", "HWC8"): 1,
                                         (lab.FP32_LINEAR_PLUGIN, 3, "FLOAT", "LINEAR"): 9})
    assert trt_plugins.tactics_timed(built) == {1: 1, 2: 7}


def test_network_weights_are_seeded_and_shaped():
    a, b = trt_plugins.network_weights(8, seed=1), trt_plugins.network_weights(8, seed=1)
    assert all((a[k] == b[k]).all() for k in a)
    assert a["conv1"].shape == (8, 8, 3, 3) and a["bias"].shape == (8,)
    assert len({file for *_, file in lab.VARIANTS.values()}) == len(lab.VARIANTS)


def test_calls_counter_starts_empty_without_tensorrt():
    assert isinstance(trt_plugins.CALLS, Counter)


# -- the Triton kernel, through Triton's CPU interpreter ---------------------------------------------

@pytest.fixture
def interpreted(monkeypatch):
    """The kernel as Triton's interpreter runs it (numpy on CPU tensors)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    kernels.triton_kernel.cache_clear()
    yield
    kernels.triton_kernel.cache_clear()


@pytest.mark.skipif(not HAS_TRITON_MODULE, reason="Triton is not installed")
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_kernel_in_the_interpreter_every_tactic(interpreted, channels_last):
    x, bias = lab.make_inputs((2, 12, 5, 7), device="cpu", dtype=torch.float32, channels_last=channels_last)
    y = torch.empty_like(x)
    for tactic in lab.TACTICS:
        y.fill_(float("nan"))
        lab.launch(x, bias, y, tactic, channels_last=channels_last)
        assert close(y, lab.reference(x, bias)), tactic.label


@pytest.mark.skipif(not HAS_TRITON_MODULE, reason="Triton is not installed")
def test_triton_kernel_in_the_interpreter_reads_padded_hwc8(interpreted):
    shape = (2, 12, 3, 5)
    x, bias = lab.make_inputs(shape, device="cpu", dtype=torch.float32)
    storage = lab.to_channel_last_storage(x, vector=8)
    out = torch.empty_like(storage)
    kernels._launch(storage, bias, out, shape, True, 8, lab.TACTIC_BY_ID[2])
    assert close(lab.from_channel_last_storage(out, shape, 8), lab.reference(x, bias))


def test_launch_refuses_mismatched_layouts():
    x, bias = lab.make_inputs((1, 4, 2, 2), device="cpu", dtype=torch.float32)
    with pytest.raises(ValueError, match="channels_last"):
        lab.launch(x, bias, torch.empty_like(x), channels_last=True)


# -- on the GPU ----------------------------------------------------------------------------------------

gpu = pytest.mark.skipif(not GPU_TRITON, reason="needs an NVIDIA GPU and Triton")


@gpu
def test_gpu_every_tactic_layout_and_call_path_matches():
    x, bias = lab.make_inputs((2, 64, 14, 14), device="cuda", dtype=torch.float16)
    reference = lab.reference(x, bias)
    y = torch.empty_like(x)
    for tactic in lab.TACTICS:
        lab.launch(x, bias, y, tactic)
        assert close(y, reference, 2e-2), tactic.label
    x_cl = x.contiguous(memory_format=torch.channels_last)
    rows = lab.verify({**lab.format_candidates(x_cl, bias),
                      "op": lambda: lab.bias_gelu_op()(x, bias),
                      "jit": lab.jit_style_call(x, bias, torch.empty_like(x), torch.cuda.Stream().cuda_stream)}, x, bias)
    assert all(r["ok"] for r in rows), rows


@gpu
def test_gpu_autotune_choice_is_one_of_the_tactics():
    x, bias = lab.make_inputs((4, 64, 28, 28), device="cuda", dtype=torch.float16)
    chosen, timings = lab.autotune_choice(x, bias)
    assert chosen in lab.TACTICS and set(timings) == {t.id for t in lab.TACTICS}
    assert timings[chosen.id] == min(timings.values())


@gpu
def test_gpu_overhead_candidates_compute_the_op():
    x, bias = lab.make_inputs((1, 64, 16, 16), device="cuda", dtype=torch.float16)
    configs = lab.overhead_candidates(x, bias, with_compile=False)
    assert lab.GRAPH_REPLAY in configs and lab.JIT_CALLBACK in configs
    runs = lab.measure(configs, device="cuda", passes=2, warmup_ms=5, measure_ms=10)
    assert all(len(ms) == 2 for ms in runs.values())
    rows = {r["call path"]: r for r in lab.overhead_rows(runs, base=lab.RAW_LAUNCH)}
    assert all(r["kernel_us"] > 0 and r["regime"] in ("device-bound", "host-bound", "mixed") for r in rows.values())
    assert rows[lab.RAW_LAUNCH]["host time"] == "the reference"
    assert lab.host_ratio(runs, lab.RAW_LAUNCH, lab.CUSTOM_OP).on == "host"


@gpu
def test_gpu_ahead_of_time_compile_gives_ptx():
    compiled = lab.compile_ahead_of_time("fp16", True, lab.DEFAULT_TACTIC)
    assert compiled.metadata.name in compiled.asm["ptx"] and compiled.metadata.num_warps == lab.DEFAULT_TACTIC.num_warps


# -- the TensorRT-version guards, with stand-in modules (no TensorRT needed) ---------------------------

class _StandInPlugin:
    """A stand-in ``tensorrt.plugin``: its decorators record what was registered."""

    TensorDesc = Tensor = AutoTuneCombination = KernelLaunchParams = SymIntExprs = object

    def __init__(self, *, aot: bool):
        self.registered = []
        if aot:
            self.aot_impl = self._recorder("aot_impl")
        self.register, self.autotune, self.impl = (self._recorder(n) for n in ("register", "autotune", "impl"))

    def _recorder(self, kind):
        def decorator_for(plugin_id):
            def record(fn):
                self.registered.append((kind, plugin_id))
                return fn
            return record
        return decorator_for


def _stand_in_trt(version):
    data_type = SimpleNamespace(HALF="HALF", FLOAT="FLOAT")
    return SimpleNamespace(__version__=version, DataType=data_type)


class _Network:
    def __init__(self):
        self.calls = []

    def add_plugin(self, *args):
        self.calls.append(args)
        return "layer"


def test_aot_plugins_need_aot_impl_and_tensorrt_10_9():
    assert lab.aot_plugins_available(_stand_in_trt("10.9.0.34"), _StandInPlugin(aot=True))
    assert lab.aot_plugins_available(_stand_in_trt("11.4.0.106"), _StandInPlugin(aot=True))
    assert not lab.aot_plugins_available(_stand_in_trt("10.8.0.43"), _StandInPlugin(aot=False))
    assert not lab.aot_plugins_available(_stand_in_trt("10.8.0.43"), _StandInPlugin(aot=True))
    assert not lab.aot_plugins_available(_stand_in_trt("10.9.0.34"), _StandInPlugin(aot=False))


def test_add_plugin_takes_the_aot_choice_from_10_9_and_one_argument_before():
    network = _Network()
    assert trt_plugins.add_plugin_layer(_stand_in_trt("10.9.0.34"), network, "call", True) == "layer"
    trt_plugins.add_plugin_layer(_stand_in_trt("11.4.0.106"), network, "call", False)
    trt_plugins.add_plugin_layer(_stand_in_trt("10.8.0.43"), network, "call", False)
    assert network.calls == [("call", True), ("call", False), ("call",)]
    with pytest.raises(RuntimeError, match="10.9"):
        trt_plugins.add_plugin_layer(_stand_in_trt("10.8.0.43"), network, "call", True)
    assert len(network.calls) == 3


@pytest.mark.parametrize("aot", [False, True])
def test_registration_adds_the_aot_implementation_only_where_tensorrt_plugin_has_it(aot):
    trtp = _StandInPlugin(aot=aot)
    ids = trt_plugins.register_with(_stand_in_trt("10.9.0.34" if aot else "10.8.0.43"), trtp)
    assert ids == (lab.FP32_LINEAR_PLUGIN, lab.MULTI_FORMAT_PLUGIN)
    jit = [(kind, plugin) for plugin in ids for kind in ("register", "autotune", "impl")]
    assert sorted(trtp.registered) == sorted(jit + ([("aot_impl", lab.MULTI_FORMAT_PLUGIN)] if aot else []))


def _runs(name, *medians, host=None):
    return [_measurement(name, ms, host if host is not None else ms) for ms in medians]


FP32_ENGINE, JIT_ENGINE, AOT_ENGINE = lab.VARIANTS


def test_engine_comparisons_without_an_aot_engine():
    runs = {FP32_ENGINE: _runs("fp32", 2.0, 2.02), JIT_ENGINE: _runs("jit", 1.0, 1.01, host=0.05),
            AOT_ENGINE: _runs("aot", 1.0, 1.01, host=0.01)}
    speed, host = lab.engine_comparisons({"runs": runs})
    assert speed.speedup == pytest.approx(2.0) and host.speedup == pytest.approx(0.2)   # AOT: a fifth of JIT's host time
    del runs[AOT_ENGINE]
    assert lab.engine_comparisons({"runs": runs})[1] is None


# -- the claims ------------------------------------------------------------------------------------

def _cmp(speedup, spread=1.0):
    """A comparison over two passes per side whose ratio A/B is `speedup`, each side spread by `spread` percent."""
    f = 1 + spread / 100
    return bench.compare(_runs("a", speedup, speedup * f), _runs("b", 1.0, f))


def _tactic_runs(best_ms, worst_ms):
    names = [t.label for t in lab.TACTICS]
    runs = {name: _runs(name, 1.0, 1.01) for name in names}
    runs[names[3]] = _runs(names[3], best_ms, best_ms * 1.01)
    runs[names[0]] = _runs(names[0], worst_ms, worst_ms * 1.01)
    return runs, names[3], names[0]


BOUND = [{"config": lab.DECLARES_LAYOUT, "bytes_ratio": 1.0, "pct_of_bound_speed": 76.0},
         {"config": lab.FP32_LINEAR_ONLY, "bytes_ratio": 5.0, "pct_of_bound_speed": 37.0}]


def _gpu_results(*, fast):
    runs, best, worst = _tactic_runs(1.0, 2.7 if fast else 1.0)
    more, less = (2.0, 0.5) if fast else (0.5, 2.0)
    host = {"custom op": _cmp(more), "torch.compile": _cmp(more), "JIT callback": _cmp(more), "graph replay": _cmp(less)}
    return lab.PyTorchResults(
        shape=(32, 256, 56, 56), precision="float16", device="cuda", format_cmp=_cmp(10.4 if fast else 1.0),
        host_cmps=host, direct=lab.RAW_LAUNCH, tactic_runs=runs, best=best, worst=worst,
        tactic_cmp=_cmp(2.7 if fast else 0.9), fused_cmp=_cmp(1.54 if fast else 1.2),
        sweep_rows=[{"config": best, "pct_of_copy": 74.0 if fast else 40.0, "gb_per_s": 2212.0 if fast else 1200.0,
                     "timed_on": "kernel", "kernel_ms": 0.0445, "latency_ms": 0.0466}],
        copy_gbps=3006.0, chosen=lab.TACTICS[3], autotune_cmp=_cmp(1.0 if fast else 0.8), format_bound=BOUND)


def _cpu_results(*, fast):
    chunks = [lab.cpu_chunk_label(c) for c in lab.CPU_CHUNKS]
    runs = {name: _runs(name, 1.0, 1.01) for name in chunks}
    runs[chunks[0]] = _runs(chunks[0], 3.0 if fast else 1.5, 3.03 if fast else 1.515)
    ratio = 2.0 if fast else 0.5
    host = {"custom op": _cmp(ratio), "torch.compile": _cmp(ratio)}
    return lab.PyTorchResults(
        shape=(8, 64, 56, 56), precision="float32", device="cpu", format_cmp=_cmp(1.6 if fast else 0.7),
        host_cmps=host, direct=lab.CPU_DIRECT, tactic_runs=runs, best=chunks[-1], worst=chunks[0],
        tactic_cmp=_cmp(3.0), fused_cmp=_cmp(1.1 if fast else 0.8), sweep_rows=[])


def _statuses(lab_report):
    return {key: next(c for c in lab_report.claims if c.claim == text) for key, text in lab.CLAIMS.items()
            if any(c.claim == text for c in lab_report.claims)}


def test_gpu_claims_hold():
    claims = _statuses(lab.pytorch_claims(_gpu_results(fast=True), has_triton=True))
    held = ["formats", "op_host", "compile_host", "tactics", "bandwidth", "autotune", "fused", "jit_host", "graph_host"]
    assert {k for k, c in claims.items() if c.status == report.HOLDS} == set(held)
    assert [claims[k].measured.split(" [")[0] for k in held] == ["10.40x", "2.00x", "2.00x", "2.70x", "74%", "1.00x",
                                                                 "1.54x", "2.00x", "0.50x"]
    assert claims["formats"].why == ("(32, 256, 56, 56) float16, cuda; the bytes moved allow 5.0x at equal copy "
                                     "speed; speed vs the copy ceiling 76% / 37%; no kernel time here: host time; "
                                     "judged on event time over 2 passes")
    assert claims["op_host"].why.startswith("the custom op's host time per call as a multiple of the raw Triton launch")
    assert claims["tactics"].why.startswith("tactic 4 against tactic 1")
    assert claims["bandwidth"].why == "2212 of 3006 GB/s, on kernel time"
    assert claims["autotune"].why.startswith("chose tactic 4; best measured tactic 4")
    for key in ("cpu_chunks", "cpu_op"):
        assert claims[key].status == report.NOT_APPLICABLE and claims[key].why == CPU_ONLY


def test_gpu_claims_fail():
    claims = _statuses(lab.pytorch_claims(_gpu_results(fast=False), has_triton=True))
    failed = ["formats", "op_host", "compile_host", "tactics", "bandwidth", "autotune", "fused", "jit_host",
              "graph_host"]
    assert [k for k in failed if claims[k].status != report.FAILS] == ["formats"]   # 1.00x: inside the noise
    assert claims["formats"].status == report.INCONCLUSIVE and "straddles" in claims["formats"].why
    assert claims["autotune"].measured.startswith("0.80x") and claims["bandwidth"].measured == "40%"
    assert "the open question: the ceiling was measured on copies of 1 GiB and more, this pass lasts 44 us" in claims["bandwidth"].why
    assert all(claims[k].why for k in failed)


def test_gpu_claims_need_the_autotune_results():
    results = _gpu_results(fast=True)
    results.chosen = None
    with pytest.raises(ValueError, match="autotune"):
        lab.pytorch_claims(results, has_triton=True)


def test_cpu_claims_hold_and_fail():
    claims = _statuses(lab.pytorch_claims(_cpu_results(fast=True), has_triton=False))
    assert [claims[k].status for k in ("formats", "op_host", "compile_host", "cpu_chunks", "cpu_op")] == [
        report.HOLDS] * 5
    assert claims["cpu_chunks"].measured.startswith("3.00x")
    assert claims["cpu_chunks"].why.startswith("best: CPU: whole tensor at once; judged on event time")
    assert "no kernel time here: host time" in claims["formats"].why
    for key in ("tactics", "bandwidth", "autotune", "fused", "jit_host", "graph_host"):
        assert claims[key].status == report.NOT_APPLICABLE
        assert claims[key].why == "needs Triton on an NVIDIA GPU; the CPU counterpart was measured instead"
    claims = _statuses(lab.pytorch_claims(_cpu_results(fast=False), has_triton=False))
    assert [claims[k].status for k in ("formats", "op_host", "compile_host", "cpu_chunks", "cpu_op")] == [
        report.FAILS] * 5
    assert claims["cpu_chunks"].measured.startswith("1.50x") and claims["cpu_op"].measured.startswith("0.80x")


def test_cpu_claims_inside_the_noise_are_inconclusive():
    results = _cpu_results(fast=False)
    results.fused_cmp = _cmp(0.9, spread=30.0)
    results.host_cmps = {"custom op": _cmp(1.0, spread=30.0), "torch.compile": _cmp(0.9, spread=30.0)}
    claims = _statuses(lab.pytorch_claims(results, has_triton=False))
    for key in ("cpu_op", "op_host", "compile_host"):
        assert claims[key].status == report.INCONCLUSIVE, key


def _trt_row(engine, *, conversions, matches=True, loads=False, tactic=4, share=0.0):
    return {"engine": engine, "conversion_layers": conversions, "matches": matches, "rel_error": 1e-3 if matches else 0.1,
            "loads_without_python": loads, "runtime_tactic": tactic, "plugin_tactic": tactic,
            "conversion_share_pct": share}


def _trt_study(*, good, aot=True):
    rows = [_trt_row(FP32_ENGINE, conversions=4 if good else 0, share=30.0 if good else 2.0),
            _trt_row(JIT_ENGINE, conversions=0, matches=good, loads=not good)]
    runs = {FP32_ENGINE: _runs("fp32", 2.0 if good else 0.5, 2.02 if good else 0.505),
            JIT_ENGINE: _runs("jit", 1.0, 1.01, host=0.05)}
    if aot:
        rows.append(_trt_row(AOT_ENGINE, conversions=0, loads=good))
        runs[AOT_ENGINE] = _runs("aot", 1.0, 1.01, host=0.01 if good else 0.1)
    timed = {t.id: 3 for t in (lab.TACTICS if good else lab.TACTICS[:2])}
    return {"rows": rows, "runs": runs, "tactics_timed": {JIT_ENGINE: timed}}


TRT_KEYS = ("trt_match", "trt_reformat", "trt_share", "trt_speed", "trt_tactics", "trt_runtime", "trt_host")


def test_tensorrt_claims_hold():
    claims = _statuses(lab.tensorrt_claims(_trt_study(good=True), "11.4.0.106"))
    assert [claims[k].status for k in TRT_KEYS] == [report.HOLDS] * 7
    assert [claims[k].measured.split(" [")[0] for k in TRT_KEYS] == ["1.0e-03", "+4 layers", "30%", "2.00x", "5 tactics",
                                                                     "1", "0.20x"]
    assert claims["trt_share"].why == "per-layer profile; multi-format engine: 0%"
    assert claims["trt_tactics"].why == "kept tactic 4 (inspector: 4)"
    assert claims["trt_runtime"].why == "AOT loads: True, JIT loads: False" and claims["trt_match"].why == ""


def test_tensorrt_claims_fail():
    claims = _statuses(lab.tensorrt_claims(_trt_study(good=False), "11.4.0.106"))
    assert [claims[k].status for k in TRT_KEYS] == [report.FAILS] * 7
    assert claims["trt_match"].why == f"largest error: {JIT_ENGINE}"
    assert claims["trt_reformat"].measured == "+0 layers"
    assert claims["trt_tactics"].measured == "2 tactics"


def test_tensorrt_claims_without_an_aot_engine():
    claims = _statuses(lab.tensorrt_claims(_trt_study(good=True, aot=False), "10.8.0.43"))
    assert [claims[k].status for k in TRT_KEYS[:5]] == [report.HOLDS] * 5
    assert claims["trt_match"].why == "2 engines: no AOT plugin on this TensorRT"
    for key in ("trt_runtime", "trt_host"):
        assert claims[key].status == report.NOT_APPLICABLE
        assert claims[key].why == ("needs ahead-of-time Python plugins (TensorRT 10.9 or newer); this TensorRT built "
                                   "the JIT engines only")


def test_tensorrt_claims_where_the_study_did_not_run():
    for version, why in ((None, "needs TensorRT (not installed)"), ("11.4.0.106", "needs TensorRT with Triton on a GPU")):
        claims = _statuses(lab.tensorrt_claims(None, version))
        assert [(claims[k].status, claims[k].why) for k in TRT_KEYS] == [(report.NOT_APPLICABLE, why)] * 7


def test_claims_run_every_section_into_one_report_in_order():
    given = report.LabReport("11_plugins")
    result = lab.claims(_cpu_results(fast=True), False, None, None, given)
    assert result is given and [c.claim for c in result.claims][:3] == [
        lab.CLAIMS["formats"], lab.CLAIMS["op_host"], lab.CLAIMS["compile_host"]]
    assert len(result.claims) == len(lab.CLAIMS) and result.claims[-1].claim == lab.CLAIMS["trt_host"]
