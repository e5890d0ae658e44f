import json

import pytest

from common import plots, report


def test_claims_statuses_and_saved_json(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTLABS_RESULTS", str(tmp_path))
    lab = report.LabReport("99_test")
    lab.check("speedup at least 2x", 2.5, 2.5 >= 2, fmt="{:.1f}x")
    lab.check("latency under 1 ms", 1.7, 1.7 < 1, fmt="{:.1f} ms")
    lab.not_applicable("FP8 faster than FP16", "no FP8 on this GPU")
    lab.check("speedup at least 2x", 1.5, 1.5 >= 2, fmt="{:.1f}x")   # re-measured: replaces the first
    statuses = {c.claim: c.status for c in lab.claims}
    assert statuses == {"speedup at least 2x": report.FAILS, "latency under 1 ms": report.FAILS,
                        "FP8 faster than FP16": report.NOT_APPLICABLE}
    table = lab.table()
    assert "does not hold" in table and "no FP8 on this GPU" in table
    data = json.loads(open(lab.save()).read())
    assert data["lab"] == "99_test" and len(data["claims"]) == 3
    assert "backend" in data["environment"] and data["claims"][2]["value"] == pytest.approx(1.5)


def test_plots_write_png_and_csv_with_fixed_size(tmp_path):
    rows = [{"batch": b, "tput": 10.0 * b, "backend": "PyTorch eager (cpu, fp32)"} for b in (1, 2, 4)]
    png = plots.line_plot(rows, x="batch", y="tput", series="backend", title="t", xlabel="x", ylabel="y",
                          path=tmp_path / "fig", logx=True, marks=[(2, "knee")], show=False)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(png).size == (int(plots.FIGSIZE[0] * plots.DPI), int(plots.FIGSIZE[1] * plots.DPI))
    csv_text = (tmp_path / "fig.csv").read_text().splitlines()
    assert csv_text[0] == "batch,tput,backend" and len(csv_text) == 4
    bar = plots.bar_plot([{"k": "fp16", "v": 700.0}], label="k", value="v", title="t", ylabel="y",
                         path=tmp_path / "bar", show=False)
    assert bar.exists()
