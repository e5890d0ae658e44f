"""The project's TensorRT code against the TensorRT 11.4 API, without TensorRT installed.

First the checkers are shown to catch planted mistakes (and to pass correct code); then they run
on ``common/`` and the notebooks in ``labs/``. See ``tests/trt_api.py`` for how.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from pathlib import Path

import pytest

import trt_api

ROOT = Path(__file__).resolve().parents[1]
LISTING = trt_api.load_listing()
SOURCES = dict(trt_api.code_sources(ROOT))


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
# TensorRT 10.x: the version guard

GUARDED = textwrap.dedent("""\
    import tensorrt as trt
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
        return trt.CausalMaskKind                       # flagged: added in 11, used unguarded
    trt.IInt8EntropyCalibrator2                         # flagged: removed in 11, used unguarded
""")


def test_version_guard_checks_each_branch_against_its_version() -> None:
    problems = trt_api.check_versions(GUARDED, "guarded.py", LISTING, LISTING_10)
    assert sorted(p.name for p in problems) == ["trt.CausalMaskKind", "trt.IInt8EntropyCalibrator2"]
    assert all("outside a version guard" in p.message for p in problems)


def test_10_16_view_restores_removed_names_and_drops_added_ones() -> None:
    old = LISTING_10["classes"]
    assert "FP16" in old["BuilderFlag"]["enum_values"] and "IInt8EntropyCalibrator2" in old
    assert "AttentionIOForm" not in old and "build_route" not in old["IBuilderConfig"]["properties"]
    assert "STRONGLY_TYPED" in old["NetworkDefinitionCreationFlag"]["enum_values"]
    assert "FP16" not in LISTING["classes"]["BuilderFlag"]["enum_values"]   # the 11.4 listing is untouched


# --------------------------------------------------------------------------------------------
# The real check: the project's own code


def test_project_sources_are_all_found() -> None:
    notebooks = {p.relative_to(ROOT).as_posix() for p in (ROOT / "labs").rglob("*.ipynb")
                 if ".ipynb_checkpoints" not in p.parts}
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "common").rglob("*.py")}
    assert modules, "no common/**/*.py found: the checks below would check nothing"
    assert set(SOURCES) == modules | notebooks


LISTING_10 = trt_api.listing_for_10_16(LISTING)


@pytest.mark.parametrize("label", sorted(SOURCES))
def test_tensorrt_names_exist_in_11_4_and_unguarded_ones_in_10_16(label: str) -> None:
    problems = trt_api.check_versions(SOURCES[label], label, LISTING, LISTING_10)
    assert not problems, "TensorRT API problems:\n" + "\n".join(map(str, problems))


def test_common_trt_type_checks_with_stubs(stubs: Path, mypy_cache: Path) -> None:
    package = ROOT / "common" / "trt"
    assert list(package.glob("*.py")), f"{package} has no Python files to check"
    status, report = trt_api.run_mypy([package], stubs, cache_dir=mypy_cache)
    assert status == 0, report
