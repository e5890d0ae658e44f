"""The project's TensorRT code against the API of every supported TensorRT, without TensorRT installed.

First the checkers are shown to catch planted mistakes (and to pass correct code); then they run
on ``common/`` (the lab modules included), the live TensorRT tests and the notebooks in ``labs/``,
each name against every version (10.8, 10.9, 10.10, 10.16, 11.4) its version guards admit. See
``tests/trt_api.py`` for how, and ``tests/data/make_trt_listing.py`` for where the 10.x listings
come from.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

import trt_api

ROOT = Path(__file__).resolve().parents[1]
LISTING = trt_api.load_listing()
LISTINGS = trt_api.load_listings()
SOURCES = dict(trt_api.code_sources(ROOT))
sys.path.insert(0, str(Path(__file__).parent / "data"))
import make_trt_listing  # noqa: E402


@pytest.fixture(scope="session")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trt_api.generate_stubs(LISTING, tmp_path_factory.mktemp("trt-stubs"))


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the session: the runs after the first reuse typeshed's analysis."""
    return tmp_path_factory.mktemp("mypy-cache")


def expectations(snippet: str, tag: str) -> dict[int, str]:
    """``{line: text}`` for each line of ``snippet`` that ends with ``# <tag>: text``."""
    return {n: m.group(1) for n, line in enumerate(snippet.splitlines(), start=1)
            if (m := re.search(rf"# {tag}: (.+)$", line))}


# --------------------------------------------------------------------------------------------
# The listing and the stubs


def test_listing_is_the_vendored_tensorrt_11_4() -> None:
    meta = LISTING["meta"]
    assert meta["tensorrt_version"].startswith("11.4"), meta["tensorrt_version"]
    assert len(LISTING["classes"]) == meta["counts"]["classes_total"]
    flags = LISTING["classes"]["BuilderFlag"]
    assert "FP16" not in flags["enum_values"] and "FP16" in flags["removed_vs_10_16_source"]


def test_generated_stubs_parse_and_pass_mypy(stubs: Path, mypy_cache: Path) -> None:
    package = stubs / "tensorrt"
    for stub in (package / "__init__.pyi", package / "plugin" / "__init__.pyi"):
        ast.parse(stub.read_text(encoding="utf-8"), filename=str(stub))
    status, report = trt_api.run_mypy([package], stubs, cache_dir=mypy_cache)
    assert status == 0, report


# --------------------------------------------------------------------------------------------
# The name check catches planted mistakes


PLANTED_NAMES = textwrap.dedent("""\
    import tensorrt as trt

    def build(logger):
        builder = trt.Builder()  # flagged: no signature takes 0 positional argument(s)
        runtime = trt.Runtime(logger, 3)  # flagged: no signature takes 2 positional argument(s)
        config = trt.Builder(logger).create_builder_config()
        config.set_flag(trt.BuilderFlag.FP16)  # flagged: removed in TensorRT 11 (present in 10.16); convert the ONNX model with ModelOpt AutoCast
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # flagged: removed in TensorRT 11 (present in 10.16)
        config.set_tactic_sources(1 << int(trt.TacticSource.CUBLAS))  # flagged: removed in TensorRT 11 (present in 10.16); only EDGE_MASK
        class Calibrator(trt.IInt8EntropyCalibrator2):  # flagged: removed in TensorRT 11 (present in 10.16); quantize explicitly
            pass
        trt.OnnxParser(network=None, logger=logger, verbose=True)  # flagged: no signature takes 0 positional argument(s) and keyword(s) network, logger, verbose
        trt.Logger.Severity.WARN  # flagged: did you mean 'WARNING'?
""")

CLEAN_NAMES = textwrap.dedent("""\
    import tensorrt as trt

    def build(onnx_path):
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
        config.set_tactic_sources(1 << int(trt.TacticSource.EDGE_MASK_CONVOLUTIONS))
        trt.init_libnvinfer_plugins(logger, namespace="")
        return trt.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
""")


def test_check_uses_flags_planted_mistakes() -> None:
    problems = trt_api.check_uses(trt_api.find_trt_uses(PLANTED_NAMES, "planted.py"), LISTING)
    print("\n".join(map(str, problems)))
    found = {int(p.where.rpartition(":")[2]): str(p) for p in problems}  # planted.py:LINE
    expected = expectations(PLANTED_NAMES, "flagged")
    assert sorted(found) == sorted(expected), "\n".join(map(str, problems))
    for line, text in expected.items():
        assert text in found[line] and found[line].startswith(f"planted.py:{line}: trt."), found[line]


def test_check_uses_passes_correct_code() -> None:
    uses = trt_api.find_trt_uses(CLEAN_NAMES, "clean.py")
    assert [u.text for u in uses] == [
        "trt.Logger", "trt.Logger.WARNING", "trt.Builder", "trt.OnnxParser", "trt.BuilderFlag.SPARSE_WEIGHTS",
        "trt.TacticSource.EDGE_MASK_CONVOLUTIONS", "trt.init_libnvinfer_plugins", "trt.Runtime"]
    assert trt_api.check_uses(uses, LISTING) == []


def test_find_trt_uses_follows_every_import_form() -> None:
    source = textwrap.dedent("""\
        import tensorrt
        from tensorrt import BuilderFlag as BF
        def f(engine: "tensorrt.ICudaEngine") -> None:
            import tensorrt as trt
            import tensorrt.plugin as trtp
            trt.Logger(min_severity=trt.Logger.INFO)
            tensorrt.plugin.register("ns::op")
            trtp.impl("ns::op")(f)
            BF.TF32
    """)
    uses = trt_api.find_trt_uses(source, "forms.py")
    assert [(u.where, u.text) for u in uses] == [
        ("forms.py:2", "tensorrt.BuilderFlag"),
        ("forms.py:3", "tensorrt.ICudaEngine"),
        ("forms.py:6", "trt.Logger"), ("forms.py:6", "trt.Logger.INFO"),
        ("forms.py:7", "tensorrt.plugin.register"),
        ("forms.py:8", "trtp.impl"),
        ("forms.py:9", "BF.TF32"),
    ]
    assert uses[2].call == trt_api.Call(0, ("min_severity",), False)
    assert trt_api.check_uses(uses, LISTING) == []


def test_code_sources_reads_notebook_code_cells(tmp_path: Path) -> None:
    cells = [{"cell_type": "markdown", "source": "# Lab"},
             {"cell_type": "code", "source": ["%pip install x\n", "import tensorrt as trt\n"]},
             {"cell_type": "code", "source": "%%time\nx = !nvidia-smi\ntrt.BuilderFlag.INT8"},
             {"cell_type": "code", "source": "%%bash\necho not python"}]
    for notebook in (tmp_path / "labs" / "lab.ipynb", tmp_path / "labs" / ".ipynb_checkpoints" / "lab.ipynb"):
        notebook.parent.mkdir(parents=True, exist_ok=True)
        notebook.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    sources = dict(trt_api.code_sources(tmp_path))
    assert list(sources) == ["labs/lab.ipynb"]
    problems = trt_api.check_uses(trt_api.find_trt_uses(sources["labs/lab.ipynb"], "labs/lab.ipynb"), LISTING)
    assert [(p.where, p.name) for p in problems] == [("labs/lab.ipynb:cell 3:3", "trt.BuilderFlag.INT8")]


# --------------------------------------------------------------------------------------------
# mypy with the stubs catches misuse of the objects TensorRT returns


PLANTED_TYPES = textwrap.dedent("""\
    import tensorrt as trt

    def build(b: trt.Builder, e: trt.ICudaEngine) -> None:
        c = b.create_builder_config()
        c.set_flag(trt.BuilderFlag.INT8)  # error: "type[BuilderFlag]" has no attribute "INT8"
        c.int8_calibrator = None  # error: "IBuilderConfig" has no attribute "int8_calibrator"
        e.device_memory_size  # error: "ICudaEngine" has no attribute "device_memory_size"
        ctx = e.create_execution_context()
        ctx.execute_async_v2([0, 0], 0)  # error: "IExecutionContext" has no attribute "execute_async_v2"
        ctx.execute_async_v3()  # error: Missing positional argument "stream_handle"
        b.create_network(flags=0, strongly_typed=True)  # error: Unexpected keyword argument "strongly_typed"
        c.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, "1GB")  # error: incompatible type "str"

    def untyped(logger):
        trt.Builder(logger).create_builder_config().set_flag(trt.BuilderFlag.FP16)  # error: has no attribute "FP16"
""")

CORRECT_TYPES = textwrap.dedent("""\
    import numpy as np
    import tensorrt as trt

    class Profiler(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            print(layer_name, ms)

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
            print(severity.name, msg)

    class OutputAllocator(trt.IOutputAllocator):
        def reallocate_output(self, tensor_name: str, memory: int, size: int, alignment: int) -> int:
            return memory

    class Plugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        def __init__(self) -> None:
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            self.num_outputs = 1
            self.plugin_name = "Pad"

        def get_output_data_types(self, input_types: list[trt.DataType]) -> list[trt.DataType]:
            return input_types

        def get_fields_to_serialize(self) -> trt.PluginFieldCollection:
            return trt.PluginFieldCollection([trt.PluginField("pads", np.zeros(2, np.int32), trt.PluginFieldType.INT32)])

    class Creator(trt.IPluginCreatorV3One):
        def __init__(self) -> None:
            trt.IPluginCreatorV3One.__init__(self)
            self.field_names = trt.PluginFieldCollection([])

        def create_plugin(self, name: str, fc: trt.PluginFieldCollection_, phase: trt.TensorRTPhase) -> Plugin:
            return Plugin()

    def build(b: trt.Builder, e: trt.ICudaEngine, logger: trt.ILogger) -> bytes:
        c = b.create_builder_config()
        c.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
        c.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        c.set_tactic_sources(1 << int(trt.TacticSource.EDGE_MASK_CONVOLUTIONS))
        profile = b.create_optimization_profile()
        profile.set_shape("input", (1, 3, 224, 224), [8, 3, 224, 224], trt.Dims([32, 3, 224, 224]))
        c.add_optimization_profile(profile)
        e.device_memory_size_v2
        ctx = e.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        ctx.set_input_shape("input", tuple(e.get_tensor_shape("input")))
        ctx.profiler = Profiler()
        ctx.set_output_allocator("output", OutputAllocator())
        trt.get_plugin_registry().register_creator(Creator(), "")
        trt.Runtime(Logger())
        ctx.execute_async_v3(0)
        b.create_network(flags=0)
        trt.Logger(trt.Logger.WARNING).min_severity = trt.Logger.Severity.INFO
        network = b.create_network(0)
        trt.OnnxParser(network, logger).parse(b"", path=None)
        plan = b.build_serialized_network(network, c)
        return bytes(plan)
""")


def test_mypy_with_stubs_flags_planted_misuse(tmp_path: Path, stubs: Path, mypy_cache: Path) -> None:
    planted = tmp_path / "planted_types.py"
    planted.write_text(PLANTED_TYPES, encoding="utf-8")
    status, report = trt_api.run_mypy([planted], stubs, cache_dir=mypy_cache)
    print(report)
    errors = {int(m.group(1)): line for line in report.splitlines()
              if (m := re.match(rf"{re.escape(str(planted))}:(\d+): error:", line))}
    expected = expectations(PLANTED_TYPES, "error")
    assert status == 1 and sorted(errors) == sorted(expected), report
    for line, text in expected.items():
        assert text in errors[line], errors[line]


def test_mypy_with_stubs_passes_correct_code(tmp_path: Path, stubs: Path, mypy_cache: Path) -> None:
    correct = tmp_path / "correct_types.py"
    correct.write_text(CORRECT_TYPES, encoding="utf-8")
    status, report = trt_api.run_mypy([correct], stubs, cache_dir=mypy_cache)
    assert status == 0, report


# --------------------------------------------------------------------------------------------
# Every supported version: the listings and the version guards


@pytest.mark.parametrize("version", ["10.8", "10.9", "10.10", "10.16"])
def test_10x_listings_come_from_their_release_branch(version: str) -> None:
    meta = LISTINGS[version]["meta"]
    assert meta["tensorrt_version"].startswith(version + "."), meta["tensorrt_version"]
    assert meta["source"]["branch"] == f"release/{version}" and re.fullmatch(r"[0-9a-f]{40}", meta["source"]["commit"])
    assert len(LISTINGS[version]["classes"]) == meta["counts"]["classes_total"] > 150


def test_the_listings_record_what_each_release_added_and_removed() -> None:
    flags = {v: set(LISTINGS[v]["classes"]["NetworkDefinitionCreationFlag"]["enum_values"]) for v in LISTINGS}
    assert "PREFER_JIT_PYTHON_PLUGINS" not in flags["10.8"]                 # arrived in 10.9 (NvInfer.h)
    assert all("PREFER_JIT_PYTHON_PLUGINS" in flags[v] for v in ("10.9", "10.10", "10.16", "11.4"))
    aot = {v for v, listing in LISTINGS.items() if "aot_impl" in listing["tensorrt_plugin_module"]}
    assert aot == {"10.9", "10.10", "10.16", "11.4"}
    add_plugin = LISTINGS["10.8"]["classes"]["INetworkDefinition"]["methods"]["add_plugin"]["signatures"]
    assert all(len(trt_api.parse_signature(s).params) == 1 for s in add_plugin)   # (func, aot) came in 10.9
    assert "FP16" in LISTINGS["10.16"]["classes"]["BuilderFlag"]["enum_values"]
    assert "FP16" not in LISTINGS["11.4"]["classes"]["BuilderFlag"]["enum_values"]
    assert "IInt8EntropyCalibrator2" in LISTINGS["10.8"]["classes"] and "AttentionIOForm" not in LISTINGS["10.16"]["classes"]


GUARDED = textwrap.dedent("""\
    import tensorrt as trt
    import tensorrt.plugin as trtp
    from common.trt import compat

    def make(builder, config):
        if compat.is_trt10(trt):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)   # 10.x only: fine here
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            flags = 0
            route = trt.IBuilderConfig.build_route      # 11.x only: fine here
        if not compat.is_trt10(trt):
            kind = trt.AttentionIOForm                  # 11.x only, negated guard
        mode = trt.TacticSource.CUDNN if compat.is_trt10(trt) else trt.TacticSource.EDGE_MASK_CONVOLUTIONS
        if compat.at_least(trt, 10, 9):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.PREFER_JIT_PYTHON_PLUGINS)   # 10.9+: fine
        if compat.is_trt10(trt) and compat.at_least(trt, 10, 9):
            flags |= 1 << int(trt.BuilderFlag.FP16)     # removed in 11, but only 10.9-10.16 get here
        return trt.CausalMaskKind                       # flagged: added in 11, used unguarded

    def register():
        if not compat.has_aot_plugins(trtp):
            return None                                 # 10.8 stops here ...
        return trtp.aot_impl("ns::op")                  # ... so only AOT-capable versions get here
    trt.IInt8EntropyCalibrator2                         # flagged: removed in 11, used unguarded
    trt.NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS   # flagged: 10.9+, used unguarded
    trtp.aot_impl                                       # flagged: 10.9+, used unguarded
""")


def test_version_guards_check_each_branch_against_the_versions_it_admits() -> None:
    problems = trt_api.check_versions(GUARDED, "guarded.py", LISTINGS)
    print("\n".join(map(str, problems)))
    found = {int(p.where.rpartition(":")[2]): p for p in problems}
    assert sorted(found) == sorted(expectations(GUARDED, "flagged")), "\n".join(map(str, problems))
    assert all("outside a version guard" in p.message for p in problems)
    line = {text: n for n, text in enumerate(GUARDED.splitlines(), start=1)}
    version = {n: re.search(r"in TensorRT ([\d.]+)", p.message).group(1) for n, p in found.items()}
    assert [version[n] for n in sorted(found)] == ["10.8", "11", "10.8", "10.8"]   # "removed in TensorRT 11"
    assert line["    return trt.CausalMaskKind                       # flagged: added in 11, used unguarded"] in found


def test_a_10_9_name_planted_outside_a_guard_fails_and_passes_inside_one() -> None:
    planted = "import tensorrt as trt\nflag = trt.NetworkDefinitionCreationFlag.PREFER_JIT_PYTHON_PLUGINS\n"
    problems = trt_api.check_versions(planted, "planted.py", LISTINGS)
    assert [p.where for p in problems] == ["planted.py:2"]
    assert "has no attribute 'PREFER_JIT_PYTHON_PLUGINS' in TensorRT 10.8" in problems[0].message
    guarded = ("import tensorrt as trt\nfrom common.trt import compat\nif compat.at_least(trt, 10, 9):\n"
               "    flag = trt.NetworkDefinitionCreationFlag.PREFER_JIT_PYTHON_PLUGINS\n")
    assert trt_api.check_versions(guarded, "guarded.py", LISTINGS) == []
    too_wide = guarded.replace("at_least(trt, 10, 9)", "at_least(trt, 10, 8)")
    assert [p.where for p in trt_api.check_versions(too_wide, "wide.py", LISTINGS)] == ["wide.py:4"]


def test_a_call_arity_that_only_a_newer_version_accepts_is_flagged() -> None:
    planted = "import tensorrt as trt\ntrt.INetworkDefinition.add_plugin(network, func, True)\n"
    problems = trt_api.check_versions(planted, "arity.py", LISTINGS)
    assert len(problems) == 1 and "no signature takes 3 positional" in problems[0].message
    assert "10.8" in problems[0].message


# --------------------------------------------------------------------------------------------
# The listing generator


BINDINGS = """\
namespace lambdas {
static const auto execute = [](IExecutionContext& self, size_t stream) { return self.enqueueV3(stream); };
}
void bindCore(py::module& m)
{
    py::class_<ILogger, PyLogger> loggerBinding{m, "ILogger", ILoggerDoc::descr, py::module_local()};
    py::enum_<ILogger::Severity>(loggerBinding, "Severity", py::arithmetic())
        .value("ERROR", ILogger::Severity::kERROR)
        .value("WARNING", ILogger::Severity::kWARNING)
        .export_values();
    loggerBinding.def(py::init<>()).def("log", &ILogger::log, "severity"_a, "msg"_a);
    py::class_<IExecutionContext>(m, "IExecutionContext")
        .def("execute_async_v3", lambdas::execute, "stream_handle"_a)
        .def("run", lambdas::execute)
        .def("get_tensor_shape", &IExecutionContext::getTensorShape)
#if ENABLE_INETWORK_SERIALIZE
        .def("serialize", lambdas::execute)
#endif
        .def_property("debug_sync", &IExecutionContext::getDebugSync, &IExecutionContext::setDebugSync)
        .def_property_readonly("engine", &IExecutionContext::getEngine)
        .def("check", [](IExecutionContext& self, int i) { return i < 0 || i > 3; }, "index"_a = 0);
    py::class_<IDerived, IExecutionContext, std::unique_ptr<IDerived, py::nodelete>>(m, "IDerived");
    m.def("get_plugin_registry", &getPluginRegistry, "flag"_a);
    m.attr("float32") = ILogger::Severity::kERROR;
}
"""
HEADERS = """\
class IExecutionContext
{
public:
    Dims getTensorShape(char const* tensorName) const noexcept { return mImpl->getTensorShape(tensorName); }
};
enum class Severity : int32_t { kERROR = 1, kWARNING = 2 };
"""


def test_the_generator_reads_pybind11_bindings() -> None:
    bindings = make_trt_listing.Bindings({"pyCore.cpp": BINDINGS}, HEADERS)
    bindings.parse()
    ctx = bindings.classes["IExecutionContext"]
    assert ctx.methods["execute_async_v3"] == ["execute_async_v3(self, stream_handle)"]
    assert ctx.methods["run"] == ["run(self, arg0)"]                       # the lambda's parameters, self dropped
    assert ctx.methods["get_tensor_shape"] == ["get_tensor_shape(self, arg0)"]   # from the header
    assert ctx.methods["check"] == ["check(self, index = ...)"]           # a comparison in an inline lambda
    assert "serialize" not in ctx.methods                                  # not built into the wheel
    assert ctx.properties == {"debug_sync": "read-write", "engine": "read-only"}
    assert bindings.classes["IDerived"].bases == ["IExecutionContext"]
    assert bindings.classes["ILogger.Severity"].exported and bindings.variables == {"loggerBinding": "ILogger"}
    assert bindings.classes["ILogger"].methods["__init__"] == ["__init__(self)"]
    assert bindings.module_functions == {"get_plugin_registry": ["get_plugin_registry(flag)"]}
    assert make_trt_listing.enum_numbers(HEADERS)["Severity"] == {"kERROR": 1, "kWARNING": 2}


@pytest.mark.skipif(not os.environ.get("TENSORRT_GIT_DIR"),
                    reason="set TENSORRT_GIT_DIR to a clone of NVIDIA/TensorRT to regenerate the 10.x listings")
@pytest.mark.parametrize("version", ["10.8", "10.9", "10.10", "10.16"])
def test_the_vendored_listings_are_what_the_generator_writes(version: str) -> None:
    listing = make_trt_listing.make_listing(os.environ["TENSORRT_GIT_DIR"], LISTINGS[version]["meta"]["source"]["commit"])
    listing["meta"]["source"]["branch"] = LISTINGS[version]["meta"]["source"]["branch"]
    assert listing == LISTINGS[version]


# --------------------------------------------------------------------------------------------
# The real check: the project's own code


def test_project_sources_are_all_found() -> None:
    notebooks = {p.relative_to(ROOT).as_posix() for p in (ROOT / "labs").rglob("*.ipynb")
                 if ".ipynb_checkpoints" not in p.parts}
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "common").rglob("*.py")}
    assert modules, "no common/**/*.py found: the checks below would check nothing"
    labs = {m for m in modules if m.startswith("common/labs/")}
    live = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "trt_live").rglob("*.py")}
    assert labs and live, "the lab modules and the live TensorRT tests must be checked too"
    assert set(SOURCES) == modules | live | notebooks


@pytest.mark.parametrize("label", sorted(SOURCES))
def test_tensorrt_names_exist_in_every_version_their_guards_admit(label: str) -> None:
    problems = trt_api.check_versions(SOURCES[label], label, LISTINGS)
    assert not problems, "TensorRT API problems:\n" + "\n".join(map(str, problems))


def test_common_trt_and_the_live_tests_type_check_with_stubs(stubs: Path, mypy_cache: Path) -> None:
    package, live = ROOT / "common" / "trt", ROOT / "tests" / "trt_live"
    assert list(package.glob("*.py")) and list(live.glob("*.py")), "nothing to check"
    status, report = trt_api.run_mypy([package, live], stubs, cache_dir=mypy_cache)
    assert status == 0, report


def test_mypy_reports_absolute_paths_from_any_working_folder(tmp_path: Path, stubs: Path, mypy_cache: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest started outside the project root once made mypy print paths the tests did not match."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    planted = tmp_path / "planted.py"
    planted.write_text("import tensorrt as trt\ntrt.BuilderFlag.INT8\n", encoding="utf-8")
    status, report = trt_api.run_mypy([Path("..") / "planted.py", ROOT / "common" / "trt" / "compat.py"], stubs,
                                      cache_dir=mypy_cache)
    assert status == 1 and re.search(rf"^{re.escape(str(planted))}:2: error:", report, re.M), report
