import pytest

from common import env
from common.env import Environment, RequirementError

CPU = Environment(python="3.11", os="Linux", cpu="x86_64", cpu_count=2, torch="2.13", cuda_available=False)
H100 = Environment(python="3.12", os="Linux", cpu="x86_64", cpu_count=16, torch="2.11", cuda_available=True,
                   gpu_name="NVIDIA H100 80GB HBM3", compute_capability=(9, 0), gpu_memory_gib=79.0, sm_count=132,
                   tensorrt="11.4.0.106")
T4 = Environment(python="3.12", os="Linux", cpu="x86_64", cpu_count=8, torch="2.11", cuda_available=True,
                 gpu_name="Tesla T4", compute_capability=(7, 5), gpu_memory_gib=15.0, sm_count=40)


def test_cpu_machine_is_told_what_to_do():
    with pytest.raises(RequirementError, match="NVIDIA GPU"):
        env.require("gpu", env=CPU)
    with pytest.raises(RequirementError, match=r"NVIDIA's package index.*\.\[trt\]"):
        env.require("tensorrt", env=CPU)
    assert env.has("onnxruntime", env=CPU) is False  # onnxruntime=None in this profile
    assert CPU.device == "cpu" and "CPU" in CPU.backend


def test_old_gpu_lacks_fp8_and_sparsity_but_has_int8():
    for need, floor in (("fp8", "8.9"), ("sparsity", "8.0")):
        with pytest.raises(RequirementError, match=f"compute capability {floor}"):
            env.require(need, env=T4)
    assert env.has("int8-tensor-cores", env=T4)


def test_tensorrt_too_old_is_refused_with_the_minimum():
    old = Environment(**{**H100.__dict__, "tensorrt": "8.6.1"})
    with pytest.raises(RequirementError, match="too old.*10.8"):
        env.require("tensorrt", env=old)
    assert env.has("tensorrt", "fp8", "sparsity", env=H100)
    assert H100.backend.startswith("TensorRT 11.4")


def test_unknown_requirement_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown requirement"):
        env.require("tpu", env=H100)


def test_header_names_machine_versions_and_backend():
    text = H100.header()
    for part in ("NVIDIA H100 80GB HBM3 (sm_90)", "132 SMs", "TensorRT", "11.4.0.106", "backend"):
        assert part in text
    assert "not installed" in CPU.header()


def test_detect_on_this_machine_is_consistent():
    found = env.detect()
    assert found.device in ("cpu", "cuda")
    assert found.has_gpu == env.has("gpu")


def test_scale_override_and_pick(monkeypatch):
    monkeypatch.setenv("TRTLABS_SCALE", "small")
    assert env.scale(H100) == "small" and env.pick(1, 2, H100) == 2
    monkeypatch.setenv("TRTLABS_SCALE", "full")
    assert env.scale(CPU) == "full"
    monkeypatch.delenv("TRTLABS_SCALE")
    assert env.scale(CPU) == "small" and env.scale(H100) == "full"


def test_folders_follow_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTLABS_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("TRTLABS_RESULTS", str(tmp_path / "r"))
    assert env.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    assert env.results_dir("01_batching") == tmp_path / "r" / "01_batching"


def test_library_notices_are_silenced_once_common_is_imported():
    import warnings

    import common  # noqa: F401  (installs the filters)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import importlib

        importlib.reload(common)   # the filters go in front of "always"
        warnings.warn("The PyTorch API of SparseSemiStructuredTensor is in prototype stage and will change", UserWarning)
        warnings.warn("a warning the labs want to see", UserWarning)
    assert [str(w.message) for w in caught] == ["a warning the labs want to see"]


def test_relative_and_home_folders_resolve_against_the_project_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)   # a kernel's working folder is labs/: it must not matter
    monkeypatch.setenv("TRTLABS_CACHE", "~/engines")
    assert env.cache_dir() == tmp_path / "engines"          # was a literal "~" folder
    assert not (tmp_path / "~").exists()
    monkeypatch.setenv("TRTLABS_RESULTS", "relresults-test")
    try:
        assert env.results_dir("01_batching") == env.project_root() / "relresults-test" / "01_batching"
        assert not (tmp_path / "relresults-test").exists()    # was created beside the kernel
    finally:
        import shutil

        shutil.rmtree(env.project_root() / "relresults-test", ignore_errors=True)


def test_a_cache_that_is_a_file_is_a_clear_error(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    monkeypatch.setenv("TRTLABS_CACHE", str(cache))
    with pytest.raises(env.FolderError, match="TRTLABS_CACHE is .*which is a file, not a folder"):
        env.cache_dir()
    with pytest.raises(env.FolderError, match="TRTLABS_CACHE .*which is a file"):
        env.check_folders()


def test_a_read_only_cache_fails_before_any_lab_work(tmp_path, monkeypatch):
    import errno
    import os

    import tmpfs

    cache = tmp_path / "ro"
    with tmpfs.mounted(cache, size="64k", read_only=True) as real:
        if not real:   # without a read-only filesystem to mount, the write fails as it would there
            def read_only(*args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))

            monkeypatch.setattr(env.tempfile, "TemporaryFile", read_only)
        monkeypatch.setenv("TRTLABS_CACHE", str(cache))
        monkeypatch.setenv("TRTLABS_RESULTS", str(tmp_path / "results"))
        with pytest.raises(env.FolderError, match="TRTLABS_CACHE .*nothing can be written.*Read-only file system"):
            env.check_folders()
        from common import execute

        monkeypatch.setattr(execute, "execute", lambda *a, **k: pytest.fail("a lab ran"))
        with pytest.raises(SystemExit) as stop:   # the runner checks the folders before lab 00 measures anything
            execute.main(["--labs", "00", "--out", str(tmp_path / "out")])
        assert stop.value.code == 2
