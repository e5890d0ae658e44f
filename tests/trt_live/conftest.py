"""The live TensorRT suite: run it (`make test-trt`) before the labs, on the machine that will run them.

Every test here carries the ``trt`` marker and runs only where ``tensorrt`` imports and a GPU is
present; elsewhere each is skipped with one line that says why. At the end a one-screen summary says
which of the course's TensorRT features work with this TensorRT on this GPU, and the same goes to
``results/trt-selftest.json``; for a failure it says what to check and what to report.

Each test names its feature with ``@pytest.mark.feature("...")``; :data:`CHECK` says what to look at
when a feature fails.
"""

from __future__ import annotations

import json
import platform
import time
from collections import defaultdict
from typing import Any

import pytest

from common import env
from common.files import write_text_atomic

#: What to look at when a feature fails (beyond the error itself), by feature.
CHECK = {
    "build and run (FP32)": "the TensorRT wheel's CUDA major version (-cu12/-cu13) against `nvidia-smi`; "
                            "`python -c \"import tensorrt\"`",
    "FP16 from AutoCast": "ModelOpt's version (`pip show nvidia-modelopt`) and that AutoCast kept the I/O in FP32",
    "INT8 from Q/DQ": "the GPU's INT8 tensor cores (compute capability 7.5+)",
    "FP8 from Q/DQ": "the GPU's FP8 tensor cores (compute capability 8.9+: Ada, Hopper, Blackwell)",
    "parser errors": "the ONNX parser version (`trt.get_nv_onnx_parser_version()`)",
    "dynamic shapes and profiles": "the shapes printed in the error against the profile's min/max",
    "several contexts and streams": "GPU memory (each context allocates its activations)",
    "auxiliary streams": "that max_aux_streams reached the builder (BuildConfig.max_aux_streams)",
    "CUDA graphs": "cuda-bindings (`pip show cuda-bindings`) against the driver's CUDA version",
    "engine inspector": "that the engine was built with profiling_verbosity='detailed'",
    "per-layer profiler": "other work on the GPU during the test (the sum is compared to the event time)",
    "timing cache": "write access to the cache folder (TRTLABS_CACHE)",
    "editable timing cache": "BuilderFlag.EDITABLE_TIMING_CACHE and the VERBOSE autotuning lines in the build log",
    "builder optimization levels": "the build log of the failing level",
    "2:4 sparsity log": "the GPU's sparse tensor cores (compute capability 8.0+) and the '(Sparsity)' INFO lines",
    "Python plugin (tensorrt.plugin)": "Triton (`pip show triton`) and, for AOT, TensorRT 10.9 or newer",
    "engine cache": "write access to the cache folder (TRTLABS_CACHE) and its free space",
}
REPORT = ("To report a failure, attach results/trt-selftest.json and the full output of `make test-trt`, "
          "with `nvidia-smi` and `pip list | grep -i -e tensorrt -e cuda -e torch -e modelopt`.")


_RESULTS = pytest.StashKey[dict]()


def _why_not() -> str | None:
    """One line saying why the live suite cannot run here, or None when it can."""
    try:
        env.require("tensorrt")
    except env.RequirementError as exc:
        return str(exc).splitlines()[0].split(". ")[0].removesuffix(".") + " (README: 'With TensorRT')"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "feature(name): the course feature a live TensorRT test checks")
    config.stash[_RESULTS] = defaultdict(list)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _why_not()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"live TensorRT test: {reason}")
    for item in items:
        if item.get_closest_marker("trt"):
            item.add_marker(skip)


def _feature(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("feature")
    return str(marker.args[0]) if marker and marker.args else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    feature = _feature(item)
    if feature and (report.when == "call" or report.outcome != "passed"):
        outcome = "skipped" if report.skipped else report.outcome
        detail = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            detail = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.failed and call.excinfo is not None:
            lines = str(call.excinfo.value).strip().splitlines() or [""]
            detail = f"{call.excinfo.typename}: {lines[-1][:300]}"
        item.config.stash[_RESULTS][feature].append({"test": item.name, "outcome": outcome, "detail": detail})
    return report


def _status(runs: list[dict[str, str]]) -> str:
    outcomes = {r["outcome"] for r in runs}
    if "failed" in outcomes:
        return "FAILS"
    if outcomes == {"skipped"}:
        return "not run"
    return "works" if outcomes == {"passed"} else "works (partly run)"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results: dict[str, list[dict[str, str]]] = config.stash[_RESULTS]
    if not results:
        return
    reason = _why_not()
    write = terminalreporter.write_line
    if reason is not None:
        write(f"TensorRT self-test: not run ({reason})")
        return
    machine = env.detect()
    rows: list[dict[str, Any]] = [{"feature": f, "status": _status(runs), "tests": runs} for f, runs in results.items()]
    terminalreporter.section(f"TensorRT {machine.tensorrt} on {machine.machine}: which course features work")
    width = max(len(r["feature"]) for r in rows)
    for row in rows:
        note = next((t["detail"] for t in row["tests"] if t["outcome"] != "passed" and t["detail"]), "")
        write(f"{row['feature']:<{width}}  {row['status']:<10} {note[:90]}")
    failed = [r for r in rows if r["status"] == "FAILS"]
    for row in failed:
        write(f"- {row['feature']}: check {CHECK.get(row['feature'], 'the error above')}")
    if failed:
        write(REPORT)
    summary = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tensorrt": machine.tensorrt, "gpu": machine.gpu_name, "compute_capability": machine.compute_capability,
        "driver": machine.driver, "cuda_runtime": machine.cuda_runtime, "torch": machine.torch,
        "python": platform.python_version(), "cuda_bindings": machine.cuda_bindings,
        "features": {r["feature"]: {"status": r["status"], "tests": r["tests"],
                                    **({"check": CHECK.get(r["feature"], "")} if r["status"] == "FAILS" else {})}
                     for r in rows},
        "report": REPORT if failed else None,
    }
    path = env.results_dir() / "trt-selftest.json"
    write_text_atomic(path, json.dumps(summary, indent=1, default=str) + "\n")
    write(f"written to {path}")
