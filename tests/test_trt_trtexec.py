"""trtexec_command: the trtexec equivalent of a BuildConfig, checked against trtexec 11's own option list."""

import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from common.trt import config as cfg
from common.trt import trtexec as tx
from common.trt import BuildConfig, Profile, batch_profile, trtexec_command

DATA = Path(__file__).parent / "data"
VENDORED = json.loads((DATA / "trtexec-options-11.json").read_text())
OPTIONS = VENDORED["options"]
API = json.loads((DATA / "tensorrt-11.4-python-api.json").read_text())
sys.path.insert(0, str(DATA))
import make_trtexec_options  # noqa: E402

PROFILE = batch_profile("input", (3, 32, 32), 1, 8, 64)


def options_of(command: str) -> list[str]:
    """The option names of a command line (shell-split, values dropped, a trailing comment ignored)."""
    return [w.partition("=")[0] for w in shlex.split(command, comments=True)[1:]]


def value_of(command: str, option: str) -> list[str]:
    return [w.partition("=")[2] for w in shlex.split(command, comments=True)[1:] if w.partition("=")[0] == option]


# ---------------------------------------------------------------------------------------------
# The vendored list and the module's tables agree


def test_the_vendored_list_is_trtexec_11_and_records_its_source():
    source = VENDORED["source"]
    assert source["repository"] == "NVIDIA/TensorRT" and source["path"] == "samples/common/sampleOptions.cpp"
    assert source["tensorrt"].startswith("11.") and len(source["commit"]) == 40
    assert VENDORED["previous"]["tensorrt"].startswith("10.") and len(VENDORED["previous"]["commit"]) == 40
    assert {"--onnx", "--minShapes", "--profile", "--noTF32", "--infStreams"} <= set(OPTIONS)
    assert {"--fp16", "--int8", "--best", "--calib"} <= set(VENDORED["removed"])
    assert not set(VENDORED["removed"]) & set(OPTIONS)


def test_the_module_knows_exactly_the_vendored_options():
    assert tx.TRTEXEC_OPTIONS == set(OPTIONS)
    assert set(tx.REMOVED_OPTIONS) == set(VENDORED["removed"])
    assert set(tx.DEPRECATED_OPTIONS) == {name for name, o in OPTIONS.items() if o["deprecated"]}
    assert {name: set(values) for name, values in tx.DEPRECATED_VALUES.items()} == \
        {name: set(o["deprecated_values"]) for name, o in OPTIONS.items() if "deprecated_values" in o}
    for name, o in OPTIONS.items():
        if "replaced_by" in o:
            assert o["replaced_by"] in tx.DEPRECATED_OPTIONS[name]


def test_every_option_the_module_sets_is_a_current_trtexec_11_option():
    emitted = set(tx.OPTIONS_SET_BY_ARGUMENTS) | set(tx.BUILDER_FLAG_OPTIONS.values())
    for name in emitted:
        assert name in OPTIONS, f"{name} is not a trtexec 11 option"
        assert not OPTIONS[name]["deprecated"], f"{name} is deprecated in trtexec 11"


def test_every_builder_flag_has_a_decision():
    with_option, without = set(tx.BUILDER_FLAG_OPTIONS), set(tx.BUILDER_FLAGS_WITHOUT_OPTION)
    assert not with_option & without
    assert with_option | without == set(cfg.BUILDER_FLAGS)


def test_enum_names_match_the_11_4_listing():
    levels = API["classes"]["TilingOptimizationLevel"]["enum_values"]
    assert {name: cfg.TILING_LEVELS.index(name) for name in cfg.TILING_LEVELS} == levels
    strategies = set(API["classes"]["ExecutionContextAllocationStrategy"]["enum_values"])
    assert strategies <= set(tx.ALLOCATION_STRATEGIES)
    assert set(tx.ALLOCATION_STRATEGIES.values()) == {"static", "profile", "runtime"}


# ---------------------------------------------------------------------------------------------
# One BuildConfig field at a time


def test_the_default_config():
    command = trtexec_command("model.onnx")
    assert command == "trtexec --onnx=model.onnx --profilingVerbosity=detailed --avgTiming=1"


@pytest.mark.parametrize("field, value, expected", [
    ("builder_optimization_level", 5, ["--builderOptimizationLevel=5"]),
    ("builder_optimization_level", 0, ["--builderOptimizationLevel=0"]),
    ("max_aux_streams", 0, ["--maxAuxStreams=0"]),
    ("sparse_weights", True, ["--sparsity=enable"]),
    ("tf32", False, ["--noTF32"]),
    ("timing_cache_path", "caches/timing.cache", ["--timingCacheFile=caches/timing.cache"]),
    ("tactic_sources", {"JIT_CONVOLUTIONS"}, ["--tacticSources=-EDGE_MASK_CONVOLUTIONS,+JIT_CONVOLUTIONS"]),
    ("tactic_sources", set(), ["--tacticSources=-EDGE_MASK_CONVOLUTIONS,-JIT_CONVOLUTIONS"]),
    ("profiling_verbosity", "layer_names_only", ["--profilingVerbosity=layer_names_only"]),
    ("profiling_verbosity", "NONE", ["--profilingVerbosity=none"]),
    ("workspace_bytes", 1 << 30, ["--memPoolSize=workspace:1G"]),
    ("workspace_bytes", 3 << 20, ["--memPoolSize=workspace:3M"]),
    ("workspace_bytes", 1536, ["--memPoolSize=workspace:1536B"]),
    ("avg_timing_iterations", 8, ["--avgTiming=8"]),
    ("max_num_tactics", -1, ["--maxTactics=-1"]),
    ("max_num_tactics", 4, ["--maxTactics=4"]),
    ("tiling_optimization_level", "moderate", ["--tilingOptimizationLevel=2"]),
    ("extra_flags", {"REFIT"}, ["--refit"]),
    ("extra_flags", {"STRIP_PLAN", "REFIT_IDENTICAL"}, ["--stripWeights"]),
    ("extra_flags", {"VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"}, ["--excludeLeanRuntime", "--versionCompatible"]),
])
def test_each_field(field, value, expected):
    base = trtexec_command("m.onnx")
    command = trtexec_command("m.onnx", BuildConfig(**{field: value}))
    words = shlex.split(command)
    added = [w for w in words if w not in shlex.split(base)]
    assert added == expected
    assert set(options_of(command)) <= set(OPTIONS)


def test_fields_left_unset_print_nothing_but_the_course_defaults():
    command = trtexec_command("m.onnx", BuildConfig(profiling_verbosity=None))
    assert options_of(command) == ["--onnx", "--avgTiming"]  # trtexec would average 8 runs, the API 1


def test_every_builder_flag_with_an_option_is_printed():
    for flag, option in tx.BUILDER_FLAG_OPTIONS.items():
        assert option in options_of(trtexec_command("m.onnx", BuildConfig(extra_flags={flag})))


def test_every_field_of_the_config_is_mapped():
    """A field added to BuildConfig must be mapped here (or refused) before this test passes."""
    mapped = {"profiles", "builder_optimization_level", "max_aux_streams", "sparse_weights", "tf32",
              "timing_cache_path", "tactic_sources", "profiling_verbosity", "workspace_bytes",
              "avg_timing_iterations", "max_num_tactics", "tiling_optimization_level", "extra_flags",
              "python_plugins"}
    assert set(BuildConfig().to_dict()) == mapped


def test_one_profile():
    command = trtexec_command("m.onnx", BuildConfig(profiles=PROFILE))
    assert "--profile" not in options_of(command)
    assert value_of(command, "--minShapes") == ["input:1x3x32x32"]
    assert value_of(command, "--optShapes") == ["input:8x3x32x32"]
    assert value_of(command, "--maxShapes") == ["input:64x3x32x32"]


def test_several_profiles_and_inputs():
    first = Profile({"tokens": ((1, 16), (4, 128), (8, 512)), "mask": ((1, 16), (4, 128), (8, 512))})
    second = Profile({"tokens": ((16, 16), (32, 64), (64, 128)), "mask": ((16, 16), (32, 64), (64, 128))})
    command = trtexec_command("m.onnx", BuildConfig(profiles=(first, second)))
    words = shlex.split(command)
    start = words.index("--profile=0")
    assert words[start:start + 8] == [
        "--profile=0", "--minShapes=mask:1x16,tokens:1x16", "--optShapes=mask:4x128,tokens:4x128",
        "--maxShapes=mask:8x512,tokens:8x512",
        "--profile=1", "--minShapes=mask:16x16,tokens:16x16", "--optShapes=mask:32x64,tokens:32x64",
        "--maxShapes=mask:64x128,tokens:64x128",
    ]


def test_a_scalar_input_and_a_name_with_a_colon():
    profile = Profile({"scale": ((), (), ()), "x:0": ((1, 4), (2, 4), (4, 4))})
    command = trtexec_command("m.onnx", BuildConfig(profiles=profile))
    assert value_of(command, "--minShapes") == ["scale:scalar,x:0:1x4"]  # trtexec splits at the last colon


@pytest.mark.parametrize("name", ["a,b", "it's"])
def test_a_name_trtexec_cannot_spell_is_refused(name):
    with pytest.raises(ValueError, match="comma or a quote"):
        trtexec_command("m.onnx", BuildConfig(profiles=Profile({name: ((1,), (1,), (1,))})))


# ---------------------------------------------------------------------------------------------
# Quoting


@pytest.mark.parametrize("path", ["my models/net.onnx", "it's here/net.onnx", "a$b/net `x`.onnx"])
def test_paths_are_quoted_for_the_shell(path, tmp_path):
    cache = tmp_path / "timing cache" / "t.cache"
    command = trtexec_command(Path(path), BuildConfig(timing_cache_path=cache), save_engine="out dir/e.plan",
                              extra=["--exportProfile=profile of run.json"])
    words = shlex.split(command)
    assert f"--onnx={path}" in words
    assert f"--timingCacheFile={cache}" in words
    assert "--saveEngine=out dir/e.plan" in words
    assert "--exportProfile=profile of run.json" in words


# ---------------------------------------------------------------------------------------------
# Run-side options


def test_run_options():
    config = BuildConfig(profiles=(PROFILE, batch_profile("input", (3, 32, 32), 64, 128, 256)))
    command = trtexec_command("m.onnx", config, shapes={"input": (128, 3, 32, 32)}, use_profile=1,
                              infer_streams=2, cuda_graph=False, allocation_strategy="ON_PROFILE_CHANGE",
                              extra=["--dumpProfile", "--iterations=50"])
    assert options_of(command)[-7:] == ["--useProfile", "--shapes", "--infStreams", "--noCudaGraph",
                                        "--allocationStrategy", "--dumpProfile", "--iterations"]
    assert value_of(command, "--shapes") == ["input:128x3x32x32"]
    assert value_of(command, "--allocationStrategy") == ["profile"]
    assert set(options_of(command)) <= set(OPTIONS)


def test_cuda_graphs_are_trtexecs_default():
    assert "--noCudaGraph" not in options_of(trtexec_command("m.onnx", cuda_graph=True))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"shapes": {"input": (128, 3, 32, 32)}}, ValueError, "outside profile 0"),
    ({"shapes": {"input": (8, 3, 32)}}, ValueError, "outside profile 0"),
    ({"shapes": {"input": (8.0, 3, 32, 32)}}, TypeError, "must be an int"),
    ({"use_profile": 1}, ValueError, "1 profile"),
    ({"infer_streams": 0}, ValueError, "infer_streams"),
    ({"cuda_graph": "no"}, TypeError, "cuda_graph"),
    ({"allocation_strategy": "dynamic"}, ValueError, "allocation_strategy"),
    ({"extra": "--dumpProfile"}, TypeError, "not a string"),
])
def test_run_options_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        trtexec_command("m.onnx", BuildConfig(profiles=PROFILE), **kwargs)


# ---------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize("option", ["--fp16", "--bf16", "--int8", "--fp8", "--int4", "--best"])
def test_removed_precision_options_are_refused_with_what_replaced_them(option):
    with pytest.raises(ValueError, match=f"trtexec 11 removed {option}: .*strongly typed.*AutoCast.*Q/DQ"):
        trtexec_command("m.onnx", extra=[option])


@pytest.mark.parametrize("option", sorted(tx.REMOVED_OPTIONS))
def test_every_removed_option_is_refused(option):
    with pytest.raises(ValueError, match=f"removed {option}: "):
        trtexec_command("m.onnx", extra=[f"{option}=x" if option.startswith("--calib") else option])


@pytest.mark.parametrize("option, match", [
    ("--useCudaGraph", "cuda_graph=False"), ("--streams=2", "--infStreams"), ("--stronglyTyped", "strongly typed"),
])
def test_deprecated_options_are_refused(option, match):
    with pytest.raises(ValueError, match=f"deprecates .*{match}"):
        trtexec_command("m.onnx", extra=[option])


@pytest.mark.parametrize("option, match", [
    ("--noTF32", "BuildConfig.tf32"), ("--minShapes=x:1", "BuildConfig.profiles"),
    ("--refit", "BuildConfig.extra_flags {'REFIT'}"), ("--infStreams=4", "infer_streams="), ("--onnx=other.onnx", "onnx_path"),
])
def test_options_that_a_field_sets_are_refused_in_extra(option, match):
    with pytest.raises(ValueError, match=re.escape(f"comes from {match}")):
        trtexec_command("m.onnx", extra=[option])


@pytest.mark.parametrize("option", ["--dumpProfiles", "-v", "dumpProfile"])
def test_unknown_options_are_refused(option):
    with pytest.raises(ValueError):
        trtexec_command("m.onnx", extra=[option])


@pytest.mark.parametrize("config, what", [
    (BuildConfig(extra_flags={"EDITABLE_TIMING_CACHE"}), "BuilderFlag.EDITABLE_TIMING_CACHE"),
    (BuildConfig(extra_flags={"REFIT_IDENTICAL"}), "BuilderFlag.REFIT_IDENTICAL"),
    (BuildConfig(python_plugins="jit"), "Python plugins"),
])
def test_settings_trtexec_cannot_express(config, what):
    with pytest.raises(ValueError, match=f"trtexec has no option for {what}"):
        trtexec_command("m.onnx", config)
    command = trtexec_command("m.onnx", config, strict=False)
    assert command.startswith(trtexec_command("m.onnx") + "  # not expressible in trtexec: ")
    assert what in command and shlex.split(command, comments=True) == shlex.split(trtexec_command("m.onnx"))


def test_the_config_must_be_a_build_config():
    with pytest.raises(TypeError, match="BuildConfig"):
        trtexec_command("m.onnx", {"tf32": False})


def test_a_command_with_everything_names_only_current_options():
    config = BuildConfig(profiles=(PROFILE, PROFILE), builder_optimization_level=4, max_aux_streams=2,
                         sparse_weights=True, tf32=False, timing_cache_path="t.cache",
                         tactic_sources={"EDGE_MASK_CONVOLUTIONS"}, workspace_bytes=1 << 28,
                         avg_timing_iterations=2, max_num_tactics=8, tiling_optimization_level="FULL",
                         extra_flags=set(tx.BUILDER_FLAG_OPTIONS))
    command = trtexec_command("m.onnx", config, shapes={"input": (8, 3, 32, 32)}, use_profile=1, infer_streams=2,
                              cuda_graph=False, allocation_strategy="runtime", save_engine="e.plan")
    names = options_of(command)
    assert set(names) <= {n for n, o in OPTIONS.items() if not o["deprecated"]}
    assert set(tx.OPTIONS_SET_BY_ARGUMENTS) <= set(names)


# ---------------------------------------------------------------------------------------------
# The generator, on a small source written like sampleOptions.cpp

SOURCE = r'''
void BuildOptions::parse(Arguments& arguments)
{
    getAndDelOption(arguments, "--onnx", model); // a comment's brace } or quote ' does not count
    getShapes(arguments, "--minShapes");
    if (getAndDelOption(arguments, "--useCudaGraph", graph))
    {
        sample::gLogWarning << "--useCudaGraph is deprecated. Graphs are on." << std::endl;
    }
    if (getAndDelOption(arguments, "--streams", streams))
    {
        sample::gLogWarning << "--streams flag has been deprecated, use --infStreams flag instead." << std::endl;
    }
    getAndDelOption(arguments, "--infStreams", n);
    char c = '}';
    std::string mentioned = "see --notAnOption for details";
}
SparsityFlag toSparsity(std::string const& v)
{
    sample::gLogWarning << "--sparsity=force has been deprecated." << std::endl;
}
void ReportingOptions::parse(Arguments& arguments)
{
    getAndDelOption(arguments, "--sparsity", s);
    getAndDelOption(arguments, "--undocumented", s);
}
void SafeBuilderOptions::parse(Arguments& arguments)
{
    getAndDelOption(arguments, "--int8", int8);
}
void BuildOptions::help(std::ostream& os)
{
    os << "  --onnx=<file>      An ONNX model {braces} inside" "\n"
        R"(  --minShapes=spec   "quoted" and {unbalanced)" "\n"
          "  --useCudaGraph     [Deprecated] a no-op." "\n"
          "  --sparsity=spec    Sparsity" "\n"
          "  --infStreams=N     Streams" "\n";
}
'''


def test_the_generator_reads_options_deprecations_and_help():
    options = make_trtexec_options.extract(SOURCE)["options"]
    assert set(options) == {"--onnx", "--minShapes", "--useCudaGraph", "--streams", "--infStreams",
                            "--sparsity", "--undocumented"}
    assert options["--useCudaGraph"] == {"documented": True, "deprecated": True}
    assert options["--streams"] == {"documented": False, "deprecated": True, "replaced_by": "--infStreams"}
    assert options["--sparsity"] == {"documented": True, "deprecated": False, "deprecated_values": ["force"]}
    assert options["--undocumented"] == {"documented": False, "deprecated": False}
    assert make_trtexec_options.parsed_options(SOURCE) == set(options)  # not the safe builder's --int8


@pytest.mark.skipif(not os.environ.get("TENSORRT_GIT_DIR"),
                    reason="set TENSORRT_GIT_DIR to a clone of NVIDIA/TensorRT to regenerate the trtexec list")
def test_the_vendored_list_is_what_the_generator_writes():
    made = make_trtexec_options.make_options(os.environ["TENSORRT_GIT_DIR"], VENDORED["source"]["commit"],
                                             VENDORED["previous"]["commit"])
    for key in ("source", "previous"):
        made[key]["ref"] = VENDORED[key]["ref"]
    assert made == VENDORED
