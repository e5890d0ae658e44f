"""The pip path (pyproject.toml) and the conda path (environment.yml) must give the same environment."""

import json
import re
from pathlib import Path

try:
    import tomllib
except ImportError:   # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + project["optional-dependencies"]["lab"] + \
        project["optional-dependencies"]["test"]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _conda_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    reqs = [line.strip()[2:] for line in lines[start + 1:] if line.strip().startswith("- ")]
    return {_name(r): r.replace(" ", "") for r in reqs if not r.startswith("-e")}


def test_environment_yml_lists_the_same_packages_and_versions_as_pyproject():
    assert _conda_requirements() == _pip_requirements()


def test_python_range_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10,<3.13"
    assert "python>=3.10,<3.13" in (ROOT / "environment.yml").read_text()


def test_tensorrt_is_an_extra_not_a_requirement():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(_name(r) == "tensorrt" for r in project["dependencies"])
    assert any(_name(r) == "tensorrt" for r in project["optional-dependencies"]["trt"])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "pytest --nbval labs/" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "--nbval" in (ROOT / "pyproject.toml").read_text()   # strict nbval options live in the config


def test_the_readme_quotes_the_recorded_course_durations():
    readme = (ROOT / "README.md").read_text()
    recorded = json.loads((ROOT / "docs" / "durations.json").read_text())
    quoted = re.search(r"On the H200\s+the thirteen labs took (\d+) s at the full scale.*?on a 2-core CPU (\d+) s at the small",
                       readme, re.S)
    assert quoted, "the README no longer quotes the recorded durations"
    gpu = sum(recorded["NVIDIA H200"]["full"].values())
    cpu = sum(recorded["cpu, 2 cores"]["small"].values())
    assert abs(int(quoted[1]) - gpu) <= 0.02 * gpu and abs(int(quoted[2]) - cpu) <= 0.02 * cpu, (quoted.groups(), gpu, cpu)
