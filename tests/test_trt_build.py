"""build_engine without TensorRT: the requirement error, and the build flow against a stand-in module.

The stand-in `tensorrt` below mimics only names that the 11.4 API listing has (a test checks that),
so the flow it exercises (parse errors stop the build, profiles, flags, tactic masks, timing cache,
engine cache, rebuild of a bad cached plan) uses the real API's names and shapes of calls.
"""

import enum
import json
import sys
import types
from pathlib import Path

import pytest

from common import env
from common.trt import build
from common.trt.build import EngineBuildError, OnnxParseError, build_engine, load_engine
from common.trt.logger import BuildLog
from common.trt.config import BuildConfig, Profile, batch_profile

API = json.loads((Path(__file__).parent / "data" / "tensorrt-11.4-python-api.json").read_text())


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    env.detect.cache_clear()
    yield
    env.detect.cache_clear()


def test_build_engine_needs_tensorrt(no_tensorrt, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    with pytest.raises(env.RequirementError, match="TensorRT") as info:
        build_engine(model, cache_dir=tmp_path / "cache")
    assert "pip install" in str(info.value)
    assert not (tmp_path / "cache").exists()


def test_load_engine_needs_tensorrt(no_tensorrt):
    with pytest.raises(env.RequirementError, match="pip install"):
        load_engine(b"plan")


@pytest.mark.parametrize("flag", ["FP16", "INT8", "BF16", "FP8"])
def test_build_config_rejects_precision_flags(flag):
    with pytest.raises(ValueError, match="TensorRT 11 has no precision builder flags"):
        BuildConfig(extra_flags={flag})


def test_build_log():
    log = BuildLog()
    log.add("INFO", "(Sparsity) Layers eligible for sparse math: conv1, conv2")
    log.add("ERROR", "no tactic")
    log.add("INTERNAL_ERROR", "assertion")
    assert log.search(r"\(Sparsity\) Layers eligible") == ["(Sparsity) Layers eligible for sparse math: conv1, conv2"]
    assert log.errors() == ["no tactic", "assertion"]
    assert log.lines()[1] == "[ERROR] no tactic"


# -- a stand-in tensorrt module ------------------------------------------------------------------

def api_enum(name):
    return enum.IntEnum(name, API["classes"][name]["enum_values"])


class Scenario:
    def __init__(self):
        self.inputs = {"input": (-1, 3, 8, 8)}
        self.parse_ok, self.build_ok, self.profile_index = True, True, 0
        self.calls = []
        self.builds = 0
        self.version = "11.4.0.106"


def fake_tensorrt(s: Scenario):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = s.version
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {
        "STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2})

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self):
            s.calls.append(("ILogger.__init__",))

    class ParserError:
        def __init__(self, i):
            self.i = i

        def code(self):
            return types.SimpleNamespace(name="UNSUPPORTED_NODE")

        def desc(self):
            return f"unsupported op #{self.i}"

        def node(self):
            return 3 + self.i

        def node_name(self):
            return f"/layer{self.i}/Custom"

        def node_operator(self):
            return "CustomOp"

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = 0 if s.parse_ok else 2

        def parse_from_file(self, model):
            s.calls.append(("parse_from_file", model))
            return s.parse_ok

        def get_error(self, index):
            return ParserError(index)

    class ITensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class INetworkDefinition:
        def __init__(self):
            self.num_inputs = len(s.inputs)

        def get_input(self, index):
            name = list(s.inputs)[index]
            return ITensor(name, s.inputs[name])

    class IOptimizationProfile:
        def set_shape(self, input, min, opt, max):
            s.calls.append(("set_shape", input, min, opt, max))

    class ITimingCache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return b"TC:" + self.data

    class IBuilderConfig:
        def __init__(self):
            self.timing_cache = None

        def __setattr__(self, name, value):
            if name != "timing_cache":
                s.calls.append(("config." + name, value))
            object.__setattr__(self, name, value)

        def set_memory_pool_limit(self, pool, pool_size):
            s.calls.append(("set_memory_pool_limit", pool, pool_size))

        def add_optimization_profile(self, profile):
            return s.profile_index

        def set_flag(self, flag):
            s.calls.append(("set_flag", flag))

        def clear_flag(self, flag):
            s.calls.append(("clear_flag", flag))

        def set_tactic_sources(self, tactic_sources):
            s.calls.append(("set_tactic_sources", tactic_sources))
            return True

        def create_timing_cache(self, serialized_timing_cache):
            data = bytes(serialized_timing_cache)
            if data.startswith(b"GARBAGE"):   # TensorRT returns a null cache for bytes it cannot read
                return None
            return ITimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache is None:   # pybind11 raises TypeError for None where the C++ takes a reference
                raise TypeError("set_timing_cache(): incompatible function arguments")
            object.__setattr__(self, "timing_cache", cache)
            return not cache.data.startswith(b"OTHER-GPU")

        def get_timing_cache(self):
            return self.timing_cache

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            s.calls.append(("create_network", flags))
            return INetworkDefinition()

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            s.builds += 1
            self.logger.log(ILogger.INFO, "(Sparsity) Layers eligible for sparse math: conv1")
            if not s.build_ok:
                self.logger.log(ILogger.ERROR, "could not find any implementation for node conv1")
                return None
            return b"PLAN-%d" % s.builds

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            if bytes(serialized_engine).startswith(b"BAD"):
                self.logger.log(ILogger.ERROR, "serialization version mismatch")
                return None
            return types.SimpleNamespace(plan=bytes(serialized_engine))

    trt.ILogger, trt.OnnxParser, trt.Builder, trt.Runtime = ILogger, OnnxParser, Builder, Runtime
    trt.Dims = tuple
    for name in ("MemoryPoolType", "BuilderFlag", "TacticSource", "ProfilingVerbosity", "TilingOptimizationLevel"):
        setattr(trt, name, api_enum(name))
    fakes = {"ILogger": ILogger, "ParserError": ParserError, "OnnxParser": OnnxParser, "ITensor": ITensor,
             "INetworkDefinition": INetworkDefinition, "IOptimizationProfile": IOptimizationProfile,
             "ITimingCache": ITimingCache, "IBuilderConfig": IBuilderConfig, "Builder": Builder, "Runtime": Runtime}
    return trt, fakes


@pytest.fixture
def fake(monkeypatch, tmp_path):
    s = Scenario()
    trt, s.fakes = fake_tensorrt(s)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(env, "require", lambda *needs, **kw: types.SimpleNamespace(tensorrt="11.4.0.106", gpu_name="Fake GPU"))
    monkeypatch.setattr(build, "_RUNTIME", [])
    s.model = tmp_path / "model.onnx"
    s.model.write_bytes(b"onnx-bytes")
    s.cache_dir = tmp_path / "engines"
    return s


def test_the_stand_in_uses_only_names_in_the_api_listing(fake):
    for real, cls in fake.fakes.items():
        listed = API["classes"][real]
        known = set(listed.get("methods", {})) | set(listed.get("properties", {})) | set(listed.get("class_attributes") or {})
        ours = {n for n in vars(cls) if not n.startswith("__")} | {"__init__"} & set(vars(cls))
        if real == "ITensor":
            ours |= {"name", "shape"}
        assert ours <= known | {"__init__"}, f"{real}: {sorted(ours - known)} are not in TensorRT 11.4"


def test_parse_failure_reports_every_error_and_never_builds(fake):
    fake.parse_ok = False
    with pytest.raises(OnnxParseError) as info:
        build_engine(fake.model, cache_dir=fake.cache_dir)
    text = str(info.value)
    assert "(2 error(s))" in text
    assert "node 3 (/layer0/Custom, op CustomOp): unsupported op #0 [UNSUPPORTED_NODE]" in text
    assert "node 4 (/layer1/Custom, op CustomOp): unsupported op #1 [UNSUPPORTED_NODE]" in text
    assert len(info.value.errors) == 2 and fake.builds == 0


def test_dynamic_inputs_need_a_profile(fake):
    with pytest.raises(ValueError, match=r"dynamic inputs \(input \(-1, 3, 8, 8\)"):
        build_engine(fake.model, cache=False)
    with pytest.raises(ValueError, match="names \\['other'\\], which the network lacks"):
        build_engine(fake.model, BuildConfig(profiles=(Profile({"input": ((1, 3, 8, 8),) * 3, "other": ((1,),) * 3}),)),
                     cache=False)
    assert fake.builds == 0


def test_on_tensorrt_10_the_network_is_made_strongly_typed(fake):
    fake.version = "10.16.1.11"
    sys.modules["tensorrt"].__version__ = fake.version
    build_engine(fake.model, BuildConfig(profiles=(batch_profile("input", (3, 8, 8), 1, 4, 16),)), cache=False)
    assert ("create_network", 1 << 0) in fake.calls   # 1 << STRONGLY_TYPED


@pytest.mark.parametrize("choice, flags", [("jit", 1 << 1), ("aot", 1 << 2)])
def test_python_plugin_preference_becomes_a_network_flag(fake, choice, flags):
    profiles = (batch_profile("input", (3, 8, 8), 1, 4, 16),)
    build_engine(fake.model, BuildConfig(profiles=profiles, python_plugins=choice), cache=False)
    assert ("create_network", flags) in fake.calls


def test_build_applies_the_config(fake, tmp_path):
    timing_cache = tmp_path / "timing.cache"
    config = BuildConfig(profiles=(batch_profile("input", (3, 8, 8), 1, 4, 16),), builder_optimization_level=5,
                         max_aux_streams=2, sparse_weights=True, tf32=False, tactic_sources={"JIT_CONVOLUTIONS"},
                         workspace_bytes=1 << 30, avg_timing_iterations=8, max_num_tactics=4,
                         tiling_optimization_level="FULL", extra_flags={"STRICT_NANS"},
                         timing_cache_path=str(timing_cache), profiling_verbosity="layer_names_only")
    result = build_engine(fake.model, config, cache_dir=fake.cache_dir)
    trt = sys.modules["tensorrt"]
    calls = fake.calls
    assert ("create_network", 0) in calls
    assert ("set_shape", "input", (1, 3, 8, 8), (4, 3, 8, 8), (16, 3, 8, 8)) in calls
    assert ("set_memory_pool_limit", trt.MemoryPoolType.WORKSPACE, 1 << 30) in calls
    assert ("clear_flag", trt.BuilderFlag.TF32) in calls and ("set_flag", trt.BuilderFlag.SPARSE_WEIGHTS) in calls
    assert ("set_flag", trt.BuilderFlag.STRICT_NANS) in calls
    assert ("set_tactic_sources", 1 << 1) in calls  # JIT_CONVOLUTIONS is 1 in TensorRT 11 (was 4 in 10.x)
    for name, value in [("builder_optimization_level", 5), ("max_aux_streams", 2), ("avg_timing_iterations", 8),
                        ("max_num_tactics", 4), ("tiling_optimization_level", trt.TilingOptimizationLevel.FULL),
                        ("profiling_verbosity", trt.ProfilingVerbosity.LAYER_NAMES_ONLY)]:
        assert ("config." + name, value) in calls
    assert result.plan == b"PLAN-1" and result.plan_size_bytes == 6 and result.engine.plan == b"PLAN-1"
    assert not result.from_cache and result.build_seconds >= 0 and result.load_seconds >= 0
    assert result.log.search(r"\(Sparsity\)") and any("Sparsity" in line for line in result.log_lines)
    assert timing_cache.read_bytes() == b"TC:"  # saved after the build; started empty
    assert build.EngineCache(fake.cache_dir).get(result.cache_key) == b"PLAN-1"


def test_second_build_comes_from_the_cache(fake):
    config = BuildConfig(profiles=(batch_profile("input", (3, 8, 8), 1, 4, 16),))
    first = build_engine(fake.model, config, cache_dir=fake.cache_dir)
    again = build_engine(fake.model, config, cache_dir=fake.cache_dir)
    assert again.from_cache and again.plan == first.plan and fake.builds == 1
    assert again.cache_key == first.cache_key and again.build_seconds == pytest.approx(first.build_seconds)
    other = build_engine(fake.model, BuildConfig(profiles=config.profiles, builder_optimization_level=1),
                         cache_dir=fake.cache_dir)
    assert not other.from_cache and fake.builds == 2


def test_a_cached_plan_that_does_not_load_is_rebuilt(fake):
    config = BuildConfig(profiles=(batch_profile("input", (3, 8, 8), 1, 4, 16),))
    first = build_engine(fake.model, config, cache_dir=fake.cache_dir)
    store = build.EngineCache(fake.cache_dir)
    store.put(first.cache_key, b"BAD-PLAN", {"trt_version": "11.4.0.106", "gpu_name": "Fake GPU"})
    with pytest.warns(UserWarning, match="did not deserialize"):
        result = build_engine(fake.model, config, cache_dir=fake.cache_dir)
    assert not result.from_cache and result.plan == b"PLAN-2"
    assert store.get(first.cache_key) == b"PLAN-2"


def test_build_failure_carries_the_log(fake, capsys):
    fake.build_ok = False
    fake.inputs = {"input": (1, 3, 8, 8)}  # static: no profile needed
    with pytest.raises(EngineBuildError, match="could not find any implementation for node conv1"):
        build_engine(fake.model, cache=False)
    assert "[TensorRT ERROR]" in capsys.readouterr().err


def test_rejected_profile(fake):
    fake.profile_index = -1
    with pytest.raises(EngineBuildError, match="rejected optimization profile 0"):
        build_engine(fake.model, BuildConfig(profiles=(batch_profile("input", (3, 8, 8), 1, 4, 16),)), cache=False)


def test_load_engine_reports_deserialize_errors(fake):
    with pytest.raises(EngineBuildError, match="serialization version mismatch"):
        load_engine(b"BAD")
    assert load_engine(b"GOOD").plan == b"GOOD"


# -- findings of the TensorRT audit and the reliability review, reproduced on the stand-in --------

PROFILES = (batch_profile("input", (3, 8, 8), 1, 4, 16),)


@pytest.mark.parametrize("content, why", [(b"GARBAGE", "is unreadable"), (b"OTHER-GPU", "does not match this TensorRT/GPU")])
def test_a_bad_timing_cache_falls_back_to_an_empty_one_with_a_warning(fake, tmp_path, content, why):
    timing_cache = tmp_path / "timing.cache"
    timing_cache.write_bytes(content)
    with pytest.warns(UserWarning, match=f"timing cache .* {why}; starting an empty one"):
        result = build_engine(fake.model, BuildConfig(profiles=PROFILES, timing_cache_path=timing_cache), cache=False)
    assert result.plan == b"PLAN-1" and timing_cache.read_bytes() == b"TC:"   # replaced by the fresh cache


def test_tensorrt_10_8_builds_jit_plugins_without_the_10_9_flag(fake):
    fake.version = "10.8.0.43"
    sys.modules["tensorrt"].__version__ = fake.version
    del sys.modules["tensorrt"].NetworkDefinitionCreationFlag
    sys.modules["tensorrt"].NetworkDefinitionCreationFlag = enum.IntEnum(   # NvInfer.h of release/10.8
        "NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    build_engine(fake.model, BuildConfig(profiles=PROFILES, python_plugins="jit"), cache=False)
    assert ("create_network", 1 << 1) in fake.calls   # strongly typed, no plugin preference
    with pytest.raises(EngineBuildError, match="no ahead-of-time Python plugins: they arrived in 10.9"):
        build_engine(fake.model, BuildConfig(profiles=PROFILES, python_plugins="aot"), cache=False)


def test_profiling_verbosity_none_keeps_the_tensorrt_default(fake):
    build_engine(fake.model, BuildConfig(profiles=PROFILES, profiling_verbosity=None), cache=False)
    assert not [c for c in fake.calls if c[0] == "config.profiling_verbosity"]


def test_an_engine_that_cannot_be_cached_is_still_returned(fake, monkeypatch):
    def full_disk(self, key, plan, meta):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build.EngineCache, "put", full_disk)
    with pytest.warns(build.EngineCacheWarning, match="built but could not be cached .*No space left"):
        result = build_engine(fake.model, BuildConfig(profiles=PROFILES), cache_dir=fake.cache_dir)
    assert result.plan == b"PLAN-1" and result.engine.plan == b"PLAN-1" and not result.from_cache


def test_an_unusable_cache_folder_builds_without_the_cache(fake, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_bytes(b"")
    with pytest.warns(build.EngineCacheWarning, match="cannot be used"):
        result = build_engine(fake.model, BuildConfig(profiles=PROFILES), cache_dir=not_a_folder / "engines")
    assert result.plan == b"PLAN-1"
