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
    cached[0].write_text("{not json")
    assert ceilings.get_ceilings().copy_gbps > 0     # a corrupt entry is re-measured


def _small():
    return _REAL(matmul_n=128, copy_bytes=1 << 20, measure_ms=10)


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
