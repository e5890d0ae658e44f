"""The headless runner (subset, scale, time budget, progress) and the HTML report it writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from common import course_report, execute
from common.env import project_root

ROOT = project_root()


def _notebook(path: Path, title: str, code: str, seconds: float | None = None) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {title}\nintro"),
                                         nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    if seconds is not None:
        nb.metadata["trtlabs"] = {"seconds": seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_select_by_number_and_unknown_lab_is_refused(tmp_path):
    nbs = [tmp_path / "00_a.ipynb", tmp_path / "03_b.ipynb", tmp_path / "11_c.ipynb"]
    assert execute.select(nbs, "3, 11") == nbs[1:]
    assert execute.select(nbs, None) == nbs
    with pytest.raises(SystemExit, match="no lab numbered 05"):
        execute.select(nbs, "05")


def test_budget_plan_skips_labs_that_no_longer_fit(tmp_path):
    nbs = [_notebook(tmp_path / f"0{i}_l.ipynb", f"Lab {i}", "1", seconds=s)
           for i, s in enumerate((100, 400, 50))]
    chosen, skipped = execute.plan(nbs, budget_s=200)
    assert chosen == [nbs[0], nbs[2]]
    assert len(skipped) == 1 and skipped[0].startswith("01_l: needs about 400 s")
    assert execute.plan(nbs, None) == (nbs, [])


def test_execute_writes_outputs_and_records_duration_apart_from_the_source(tmp_path):
    src = _notebook(tmp_path / "labs" / "00_tiny.ipynb", "Lab 00 — tiny", "print(6 * 7)")
    out = tmp_path / "out" / "00_tiny.ipynb"
    seconds = execute.execute(src, out, timeout_s=120, progress=False)
    done = nbformat.read(out, as_version=4)
    assert done.cells[1].outputs[0]["text"] == "42\n"
    assert done.metadata["trtlabs"]["seconds"] == pytest.approx(seconds, abs=0.1)
    assert not nbformat.read(src, as_version=4).cells[1].get("outputs")   # the source is untouched


def _fake_run(out: Path) -> None:
    for lab, status in (("00_tour", "holds"), ("01_batching", "does not hold")):
        _notebook(out / "notebooks" / f"{lab}.ipynb", f"Lab {lab[:2]} — {lab[3:]}", "1")
        res = out / "results" / lab
        res.mkdir(parents=True)
        (res / "claims.json").write_text(json.dumps({
            "lab": lab, "environment": {"machine": "Test GPU", "backend": "PyTorch (CUDA)", "torch": "2.x"},
            "claims": [{"claim": f"{lab} <claim>", "measured": "1.5x", "status": status, "why": "because"},
                       {"claim": "needs trt", "measured": "-", "status": "not applicable here", "why": "no TensorRT"}]}))
        (res / "speed.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (out / "timings.json").write_text(json.dumps({"labs": {"00_tour.ipynb": 12.0, "01_batching.ipynb": None},
                                                  "skipped": ["02_streams: needs about 30 s"],
                                                  "total_seconds": 12.0, "scale": "small"}))


def test_report_has_a_section_per_lab_with_claims_statuses_and_figures(tmp_path):
    _fake_run(tmp_path)
    text = course_report.write_report(tmp_path).read_text()
    assert 'id="00_tour"' in text and 'id="01_batching"' in text
    assert "Test GPU" in text and "PyTorch (CUDA)" in text
    assert "00_tour &lt;claim&gt;" in text                       # escaped, not raw HTML
    assert "class=holds>holds" in text and "class=fails>does not hold" in text
    assert text.count("data:image/png;base64,") == 2
    assert "failed" in text and "02_streams: needs about 30 s" in text
    assert "<script" not in text


def test_report_without_a_run_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="make report"):
        course_report.build_html(tmp_path)


def test_command_line_runs_a_subset_into_the_output_folder_and_writes_the_report(tmp_path):
    labs = tmp_path / "labs"
    _notebook(labs / "00_one.ipynb", "Lab 00 — one",
              "from common import report\nlab = report.LabReport('00_one')\n"
              "lab.check('two is more than one', 2, 2 > 1)\nprint(lab.save())")
    _notebook(labs / "01_two.ipynb", "Lab 01 — two", "print('not run')")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    run = subprocess.run([sys.executable, "-m", "common.execute", str(labs / "00_one.ipynb"),
                          str(labs / "01_two.ipynb"), "--labs", "0", "--scale", "small", "--out", str(out),
                          "--report"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[1/1] 00_one.ipynb" in run.stdout and "01_two" not in run.stdout
    assert (out / "notebooks" / "00_one.ipynb").exists()
    claims = json.loads((out / "results" / "00_one" / "claims.json").read_text())
    assert claims["claims"][0]["status"] == "holds"
    html = (out / "report.html").read_text()
    assert 'id="00_one"' in html and "two is more than one" in html
    assert json.loads((out / "timings.json").read_text())["scale"] == "small"
