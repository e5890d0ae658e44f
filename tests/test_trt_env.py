"""A TensorRT that is installed but fails to import is reported with its real error, not as missing."""

import sys

import pytest

from common import env


@pytest.fixture
def fake_install(tmp_path, monkeypatch):
    """A `tensorrt` package on sys.path whose import runs `body`."""
    def install(body: str) -> None:
        package = tmp_path / "tensorrt"
        package.mkdir()
        (package / "__init__.py").write_text(body, encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    yield install
    sys.modules.pop("tensorrt", None)
    env.detect.cache_clear()


def test_missing_libraries_show_the_import_error_and_what_to_check(fake_install):
    fake_install('raise ImportError("libnvinfer.so.10: cannot open shared object file: No such file or directory")')
    version, error = env._tensorrt_version()
    assert version is None and error.startswith("ImportError: libnvinfer.so.10: cannot open shared object")
    machine = env.Environment(python="3.12", os="Linux", cpu="x86_64", cpu_count=2, torch="2.13",
                              cuda_available=True, gpu_name="GPU", gpu_memory_gib=80.0, sm_count=132,
                              tensorrt=None, tensorrt_error=error)
    with pytest.raises(env.RequirementError) as info:
        env.require("tensorrt", env=machine)
    message = str(info.value)
    assert "installed but does not import: ImportError: libnvinfer.so.10" in message
    assert "libnvinfer" in message and "-cu12 or -cu13" in message and "nvidia-smi" in message
    assert "not installed" not in message
    assert "does not import (ImportError: libnvinfer.so.10" in machine.header()


def test_a_missing_dependency_inside_tensorrt_is_a_broken_install(fake_install):
    fake_install("import tensorrt_libs_that_is_not_there")
    version, error = env._tensorrt_version()
    assert version is None and "ModuleNotFoundError" in error and "tensorrt_libs_that_is_not_there" in error


def test_no_tensorrt_at_all_is_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # import raises ModuleNotFoundError(name="tensorrt")
    assert env._tensorrt_version() == (None, None)


def test_an_importable_tensorrt_gives_its_version(fake_install):
    fake_install('__version__ = "10.8.0.43"')
    assert env._tensorrt_version() == ("10.8.0.43", None)
