import json

import pytest

from common import ceilings, env, execute


def test_ceilings_measure_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTLABS_CACHE", str(tmp_path))
    monkeypatch.setattr(ceilings, "measure_ceilings", _small)
    first = ceilings.get_ceilings()
    cached = list(tmp_path.glob("ceilings-*.json"))
    assert len(cached) == 1
    assert ceilings.get_ceilings() == first          # read back, not re-measured
    assert ceilings.cached_ceilings() == first
    cached[0].write_text("{not json")
    with pytest.warns(ceilings.CeilingsCacheWarning, match="rejected"):
        assert ceilings.get_ceilings().copy_gbps > 0     # a corrupt entry is re-measured
    assert not list(tmp_path.glob(".ceilings-*"))    # no temporary file left beside it


def _small(**kwargs):
    return _REAL(matmul_n=128, copy_bytes=1 << 20, measure_ms=10, **kwargs)


_REAL = ceilings.measure_ceilings


def test_measured_ceilings_are_positive_and_usable():
    c = _REAL(matmul_n=128, copy_bytes=1 << 20, measure_ms=10)
    assert c.copy_gbps > 0 and c.matmul_tflops["fp32"] > 0
    assert c.pct_of_matmul(c.matmul_tflops["fp32"], "fp32") == pytest.approx(100)
    assert c.pct_of_copy(c.copy_gbps / 2) == pytest.approx(50)
    assert {r["ceiling"] for r in c.rows()} >= {"copy bandwidth", "matmul fp32"}
    if not env.has("gpu"):
        with pytest.raises(KeyError, match="no measured fp8"):
            c.pct_of_matmul(1.0, "fp8")


def test_the_best_of_a_sweep_is_kept_with_the_shape_and_size_that_gave_it():
    c = _REAL(sizes=(64, 128), shapes=[(96, 64, 128)], copy_sizes=(1 << 16, 1 << 20), measure_ms=5)
    sweep = c.matmul_sweep["fp32"]
    assert set(sweep) == {"64x64x64", "128x128x128", "96x64x128"}
    assert c.matmul_tflops["fp32"] == max(sweep.values())
    assert "x".join(map(str, c.matmul_shapes["fp32"])) == max(sweep, key=sweep.get)
    assert c.copy_gbps == max(c.copy_sweep.values()) and str(c.copy_bytes) == max(c.copy_sweep, key=c.copy_sweep.get)
    assert c.rows()[0]["datasheet"] == "unknown" and c.measured_at


def _gpu(name="NVIDIA H200 (sm_90)", **changes):
    base = dict(machine=name, device="cuda", torch="2.11", copy_gbps=4229.0, copy_bytes=4 << 30,
                matmul_tflops={"fp16": 665.0, "bf16": 673.0}, matmul_shape=(8192, 8192, 8192))
    return ceilings.Ceilings(**{**base, **changes})


@pytest.mark.parametrize("name, sheet", [
    ("NVIDIA H200 (sm_90)", "H200 SXM"), ("NVIDIA H100 80GB HBM3 (sm_90)", "H100 SXM"),
    ("NVIDIA H100 PCIe (sm_90)", "H100 PCIe"), ("NVIDIA A100-SXM4-80GB (sm_80)", "A100 80GB SXM"),
    ("NVIDIA A100 80GB PCIe (sm_80)", "A100 80GB PCIe"), ("NVIDIA A100-SXM4-40GB (sm_80)", "A100 40GB"),
    ("NVIDIA L4 (sm_89)", "L4"), ("NVIDIA L40S (sm_89)", "L40S"), ("NVIDIA GeForce RTX 4090 (sm_89)", "GeForce RTX 4090"),
    ("NVIDIA L40 (sm_89)", None), ("Some Future GPU (sm_120)", None),
])
def test_datasheet_peaks_of_known_gpus(name, sheet):
    found = ceilings.datasheet_for(name)
    assert (found.name if found else None) == sheet
    rows = _gpu(name).rows()
    assert all((r["datasheet"] == "unknown") == (sheet is None) for r in rows)


def test_datasheet_is_shown_beside_each_measured_ceiling():
    rows = {r["ceiling"]: r for r in _gpu().rows()}
    assert rows["copy bandwidth"]["datasheet"] == 4800 and rows["copy bandwidth"]["best_at"] == "4 GiB"
    assert rows["matmul fp16"]["datasheet"] == pytest.approx(989.4)
    assert rows["matmul fp16"]["pct_of_datasheet"] == pytest.approx(67.2, abs=0.1)


def test_no_figure_reads_above_100_percent_of_its_ceiling():
    c = _gpu()
    assert c.pct_of_matmul(332.5, "fp16") == pytest.approx(50)
    with pytest.warns(ceilings.CeilingWarning, match="above the measured fp16 ceiling"):
        assert c.pct_of_matmul(691.6, "fp16") == 100.0        # 104%: the new best, the ceiling lifted
    assert c.matmul_tflops["fp16"] == 691.6 and c.lifted == {"fp16": 665.0}
    assert c.pct_of_matmul(691.6, "fp16") == 100.0
    with pytest.raises(ceilings.CeilingExceeded, match="counts something the ceiling does not"):
        c.pct_of_copy(5.15 * c.copy_gbps)                       # a transpose's "515% of a copy"
    with pytest.raises(ceilings.CeilingExceeded):
        ceilings.pct_of(2.0, 1.0, "copy")
    assert ceilings.pct_of(0.5, 1.0) == 50.0
    with pytest.raises(ValueError, match="no usable"):
        ceilings.pct_of(1.0, 0.0)


def _cache_text(c):
    import dataclasses

    return json.dumps(dataclasses.asdict(c))


@pytest.mark.parametrize("bad, why", [
    ({"copy_gbps": 0}, "not a finite positive"), ({"copy_gbps": -3.0}, "not a finite positive"),
    ({"copy_gbps": float("nan")}, "not a finite positive"), ({"copy_gbps": "4229"}, "not a number"),
    ({"copy_gbps": 0.001}, "implausible"), ({"matmul_tflops": {"fp16": 5000.0}}, "implausible"),
    ({"matmul_tflops": {"fp16": True}}, "not a number"), ({"matmul_tflops": {}}, "no matrix rates"),
    ({"matmul_shape": [8192, 8192]}, "three positive"), ({"copy_bytes": -1}, "copy_bytes"),
    ({"machine": "NVIDIA H100 PCIe (sm_90)"}, "not this one"), ({"torch": "2.0"}, "not this one"),
    ({"version": 1}, "schema version"),
])
def test_cached_ceilings_are_validated_on_read(bad, why):
    text = json.loads(_cache_text(_gpu()))
    text.update(bad)
    with pytest.raises(ValueError, match=why):
        ceilings.validate(text, machine="NVIDIA H200 (sm_90)", torch_version="2.11")
    good = ceilings.validate(json.loads(_cache_text(_gpu())), machine="NVIDIA H200 (sm_90)", torch_version="2.11")
    assert good == _gpu()
    with pytest.raises(ValueError, match="not an object"):
        ceilings.validate([1, 2], machine="x", torch_version="y")


def test_an_implausible_cached_file_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTLABS_CACHE", str(tmp_path))
    monkeypatch.setattr(ceilings, "measure_ceilings", _small)
    first = ceilings.get_ceilings()
    data = json.loads(ceilings.cache_path().read_text())
    data["copy_gbps"] = -1.0
    ceilings.cache_path().write_text(json.dumps(data))
    with pytest.warns(ceilings.CeilingsCacheWarning, match="finite positive"):
        again = ceilings.get_ceilings()
    assert again.copy_gbps > 0 and again.machine == first.machine
    ceilings.cache_path().unlink()
    assert ceilings.cached_ceilings() is None        # a missing file: no warning, nothing measured


_WORKER = """
import os, sys, time, warnings
from common import ceilings, env
warnings.simplefilter("error", ceilings.CeilingsCacheWarning)   # a torn or corrupt read fails the worker
e = env.detect()
fixed = ceilings.Ceilings(machine=e.machine, device=e.device, torch=e.torch or "", copy_gbps=20.0,
                          copy_bytes=1 << 26, matmul_tflops={"fp32": 0.5}, matmul_shape=(1024, 1024, 1024))
ceilings.measure_ceilings = lambda **kw: fixed
writer, deadline, n = sys.argv[1] == "w", time.monotonic() + 3.0, 0
while time.monotonic() < deadline:
    c = ceilings.get_ceilings(refresh=writer)
    assert c.copy_gbps > 0 and c.matmul_tflops["fp32"] > 0
    n += 1
print(n)
"""


def test_readers_and_writers_in_several_processes_never_see_a_torn_file(tmp_path):
    import os
    import subprocess
    import sys

    env_vars = {**os.environ, "TRTLABS_CACHE": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, role], env=env_vars, cwd=env.project_root(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for role in ("w", "w", "r", "r")]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
        assert int(out.strip()) > 0
    assert len(list(tmp_path.glob("ceilings-*.json"))) == 1 and not list(tmp_path.glob(".ceilings-*"))


def test_lab_notebooks_are_found_in_order():
    names = [p.name for p in execute.lab_notebooks()]
    assert names[:2] == ["00_tour.ipynb", "01_batching.ipynb"]
    assert names == sorted(names)


def test_committed_notebooks_come_from_a_real_run():
    for path in execute.lab_notebooks():
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code, path
        assert all(c["execution_count"] is not None for c in code), f"{path.name}: unexecuted cells"
        assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"]), path.name
        header = "".join("".join(o.get("text", "")) for o in code[0]["outputs"])
        assert "machine" in header and "backend" in header, f"{path.name}: header names no machine/backend"


def test_labs_folder_lists_only_the_labs_and_their_solutions():
    labs = execute.project_root() / "labs"
    tracked = {p.name for p in labs.iterdir() if not p.name.startswith(".") and p.name != "__pycache__"}
    assert tracked == {p.name for p in execute.lab_notebooks()} | {"solutions"}


def test_jupyterlab_opens_lab_00_at_the_project_root_without_the_news_pop_up():
    root = execute.project_root()
    lab = json.loads((root / ".jupyter" / "jupyter_lab_config.json").read_text())["LabApp"]
    assert lab["default_url"] == "/lab/tree/labs/00_tour.ipynb" and (root / "labs" / "00_tour.ipynb").exists()
    overrides = json.loads((root / ".jupyter" / "labconfig" / "default_setting_overrides.json").read_text())
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    makefile = (root / "Makefile").read_text()
    assert "JUPYTER_CONFIG_PATH=$(CURDIR)/.jupyter" in makefile and "--ServerApp.root_dir=$(CURDIR)" in makefile
    assert " labs/" not in makefile.split("lab-headless: setup-lab", 1)[1].split("\n\n", 1)[0]
    pyproject = (root / "pyproject.toml").read_text()
    assert "--nbval-sanitize-with tests/nbval_sanitize.cfg" in pyproject and (root / "tests" / "nbval_sanitize.cfg").exists()
