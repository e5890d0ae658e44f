"""BuildConfig and Profile: validation, canonical form, and names checked against the 11.4 API listing."""

import json
from pathlib import Path

import pytest

from common.trt import config as cfg
from common.trt.config import BuildConfig, Profile, batch_profile

API = json.loads((Path(__file__).parent / "data" / "tensorrt-11.4-python-api.json").read_text())


def enum_members(name):
    return set(API["classes"][name]["enum_values"])


def test_profile_normalises_and_is_hashable():
    p = Profile({"y": ([1, 4], (2, 4), (8, 4)), "x": ((1,), (1,), (1,))})
    assert list(p.shapes) == ["x", "y"]  # sorted
    assert p.shapes["y"] == ((1, 4), (2, 4), (8, 4))
    assert p == Profile({"x": ((1,), (1,), (1,)), "y": ((1, 4), (2, 4), (8, 4))})
    assert hash(p) == hash(Profile({"x": ((1,), (1,), (1,)), "y": ((1, 4), (2, 4), (8, 4))}))
    assert p.to_dict()["y"] == {"min": [1, 4], "opt": [2, 4], "max": [8, 4]}


@pytest.mark.parametrize("triple, match", [
    (((4, 3), (2, 3), (8, 3)), r"axis 0: need min <= opt <= max, got 4, 2, 8"),
    (((1, 3), (2, 3), (8, 2)), r"axis 1"),
    (((1, 3), (2, 3, 1), (8, 3)), "differ in rank"),
    (((-1, 3), (2, 3), (8, 3)), "negative dimension"),
    (((1, 3), (2, 3)), r"must be \(min, opt, max\)"),
])
def test_profile_rejects_bad_ranges(triple, match):
    with pytest.raises(ValueError, match=match):
        Profile({"input": triple})


def test_profile_needs_an_input():
    with pytest.raises(ValueError, match="at least one input"):
        Profile({})


def test_batch_profile():
    p = batch_profile("images", (3, 224, 224), 1, 8, 32)
    assert p.shapes["images"] == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))


def test_defaults_leave_tensorrt_defaults():
    c = BuildConfig()
    assert c.builder_optimization_level is None and c.max_aux_streams is None
    assert c.tactic_sources is None and c.workspace_bytes is None
    assert c.tf32 is True and c.sparse_weights is False
    assert c.profiling_verbosity == "detailed"


def test_to_dict_is_canonical_and_json_serialisable():
    a = BuildConfig(profiles=[batch_profile("x", (4,), 1, 2, 4)], tactic_sources={"JIT_CONVOLUTIONS", "edge_mask_convolutions"},
                    extra_flags=["STRICT_NANS", "refit"], tiling_optimization_level="fast", profiling_verbosity="DETAILED")
    b = BuildConfig(profiles=(batch_profile("x", (4,), 1, 2, 4),), tactic_sources=frozenset({"EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"}),
                    extra_flags=frozenset({"REFIT", "STRICT_NANS"}), tiling_optimization_level="FAST")
    assert a == b and hash(a) == hash(b)
    assert a.canonical_json() == b.canonical_json()
    d = json.loads(a.canonical_json())
    assert d["tactic_sources"] == ["EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"]
    assert d["extra_flags"] == ["REFIT", "STRICT_NANS"]
    assert d["tiling_optimization_level"] == "FAST"
    assert d["profiles"][0]["x"]["max"] == [4, 4]
    assert BuildConfig(builder_optimization_level=4).canonical_json() != BuildConfig().canonical_json()


@pytest.mark.parametrize("field, value, exc, match", [
    ("builder_optimization_level", 6, ValueError, r"0\.\.5"),
    ("builder_optimization_level", -1, ValueError, r"0\.\.5"),
    ("builder_optimization_level", True, TypeError, "int or None"),
    ("builder_optimization_level", 2.0, TypeError, "int or None"),
    ("max_aux_streams", -1, ValueError, ">= 0"),
    ("workspace_bytes", 0, ValueError, ">= 1"),
    ("avg_timing_iterations", 0, ValueError, ">= 1"),
    ("max_num_tactics", 0, ValueError, "-1"),
    ("max_num_tactics", -2, ValueError, ">= -1"),
    ("profiling_verbosity", "verbose", ValueError, "profiling_verbosity"),
    ("tiling_optimization_level", "max", ValueError, "NONE"),
    ("tactic_sources", "JIT_CONVOLUTIONS", TypeError, "not a string"),
])
def test_rejects_bad_values(field, value, exc, match):
    with pytest.raises(exc, match=match):
        BuildConfig(**{field: value})


def test_accepts_boundaries():
    assert BuildConfig(builder_optimization_level=0).builder_optimization_level == 0
    assert BuildConfig(builder_optimization_level=5, max_aux_streams=0, max_num_tactics=-1).max_num_tactics == -1


@pytest.mark.parametrize("flag", ["FP16", "BF16", "INT8", "fp8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS"])
def test_precision_flags_point_to_the_onnx(flag):
    with pytest.raises(ValueError, match="AutoCast") as info:
        BuildConfig(extra_flags={flag})
    assert "Q/DQ" in str(info.value) and "strongly typed" in str(info.value)


@pytest.mark.parametrize("flags, match", [
    ({"TF32"}, "BuildConfig.tf32"),
    ({"SPARSE_WEIGHTS"}, "BuildConfig.sparse_weights"),
    ({"DIRECT_IO"}, "deprecated"),
    ({"WEIGHTLESS"}, "removed in TensorRT 11"),
    ({"NOT_A_FLAG"}, "unknown BuilderFlag"),
])
def test_extra_flags_checked(flags, match):
    with pytest.raises(ValueError, match=match):
        BuildConfig(extra_flags=flags)


@pytest.mark.parametrize("source", ["CUBLAS", "CUBLAS_LT", "CUDNN"])
def test_removed_tactic_sources(source):
    with pytest.raises(ValueError, match="removed in TensorRT 11"):
        BuildConfig(tactic_sources={source})


def test_empty_tactic_sources_means_all_off():
    assert BuildConfig(tactic_sources=set()).tactic_sources == frozenset()


def test_profiles_must_cover_the_same_inputs():
    with pytest.raises(ValueError, match="same inputs"):
        BuildConfig(profiles=(batch_profile("a", (2,), 1, 1, 2), batch_profile("b", (2,), 1, 1, 2)))


def test_names_match_the_tensorrt_11_4_listing():
    flags = enum_members("BuilderFlag")
    assert cfg.BUILDER_FLAGS <= flags
    assert set(cfg.FLAGS_WITH_FIELDS) <= flags and cfg.DEPRECATED_FLAGS <= flags
    removed = set(API["classes"]["BuilderFlag"]["removed_vs_10_16_source"])
    assert (cfg.REMOVED_PRECISION_FLAGS | cfg.REMOVED_FLAGS) <= removed
    assert not (cfg.REMOVED_PRECISION_FLAGS | cfg.REMOVED_FLAGS) & flags
    assert cfg.TACTIC_SOURCES == enum_members("TacticSource")
    assert cfg.REMOVED_TACTIC_SOURCES == set(API["classes"]["TacticSource"]["removed_vs_10_16_source"])
    assert set(cfg.TILING_LEVELS) == enum_members("TilingOptimizationLevel")
    assert {v.upper() for v in cfg.PROFILING_VERBOSITIES} == enum_members("ProfilingVerbosity")


def test_python_plugins_choice_is_checked_and_keyed():
    assert BuildConfig(python_plugins="AOT").python_plugins == "aot"
    with pytest.raises(ValueError, match="python_plugins must be one of"):
        BuildConfig(python_plugins="both")
    assert BuildConfig(python_plugins="jit").to_dict() != BuildConfig(python_plugins="aot").to_dict()


# -- every value is type-checked, and the error says what was expected -----------------------------

GOOD = {"x": ((1, 3), (2, 3), (4, 3))}


@pytest.mark.parametrize("field, value, match", [
    ("tf32", "no", "tf32 must be True or False, got 'no'"),          # a non-empty string is truthy
    ("sparse_weights", "false", "sparse_weights must be True or False, got 'false'"),
    ("tf32", 1, "tf32 must be True or False, got 1"),
    ("profiles", {"x": GOOD["x"]}, r"got dict: wrap the shapes as Profile\("),
    ("profiles", None, r"got NoneType: pass \(\) for no profiles"),
    ("profiles", [((1, 3), (2, 3), (4, 3))], r"profiles\[0\] must be a Profile, got tuple"),
    ("profiling_verbosity", 3, "profiling_verbosity must be one of .* got 3"),
    ("tiling_optimization_level", 2, "tiling_optimization_level must be one of .* got 2"),
    ("timing_cache_path", 7, "timing_cache_path must be a path"),
    ("tactic_sources", {1}, r"tactic_sources takes names \(strings\), got 1"),
    ("extra_flags", 5, "extra_flags takes a set of names, got 5"),
])
def test_wrong_types_are_errors_that_say_what_was_expected(field, value, match):
    with pytest.raises(TypeError, match=match):
        BuildConfig(**{field: value})


@pytest.mark.parametrize("dims, match", [
    ((2.7, 3), r"min shape, dimension 0 must be an int, got 2.7 \(float\)"),
    ((True, 3), r"min shape, dimension 0 must be an int, got True \(bool\)"),
    (("3", 3), r"min shape, dimension 0 must be an int, got '3' \(str\)"),
    ("13", r"must be a tuple or list of ints, got '13'"),
])
def test_shape_dims_are_never_truncated_or_coerced(dims, match):
    with pytest.raises(TypeError, match=match):
        Profile({"x": (dims, (2, 3), (4, 3))})


def test_profile_shapes_must_be_a_mapping_of_named_triples():
    with pytest.raises(TypeError, match="takes a mapping"):
        Profile([((1,), (2,), (3,))])
    with pytest.raises(TypeError, match="names must be strings"):
        Profile({0: ((1,), (2,), (3,))})


def test_numpy_ints_paths_and_lists_are_accepted():
    np = pytest.importorskip("numpy")
    profile = Profile({"x": ([np.int64(1), 3], (2, 3), (4, 3))})
    assert profile.shapes["x"][0] == (1, 3) and type(profile.shapes["x"][0][0]) is int
    config = BuildConfig(profiles=[profile], timing_cache_path=Path("t.cache"))
    assert config.profiles == (profile,) and config.timing_cache_path == "t.cache"


def test_profiling_verbosity_none_means_the_tensorrt_default():
    config = BuildConfig(profiling_verbosity=None)
    assert config.profiling_verbosity is None and config.to_dict()["profiling_verbosity"] is None
    assert BuildConfig().profiling_verbosity == "detailed"
