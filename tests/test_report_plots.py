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
    cost = data["kernel_time_pass"]   # what measuring kernel time cost the lab: zero passes here, on a CPU
    assert set(cost) == {"pass_seconds", "passes", "cupti_start_seconds", "loop_tail_seconds", "shared_measurements"} and cost["passes"] >= 0


@pytest.mark.parametrize("interval, above, status", [
    ((1.10, 1.30), True, report.HOLDS), ((0.80, 0.95), True, report.FAILS), ((0.95, 1.08), True, report.INCONCLUSIVE),
    ((0.80, 0.95), False, report.HOLDS), ((1.10, 1.30), False, report.FAILS), ((0.95, 1.08), False, report.INCONCLUSIVE),
    ((1.00, 1.20), True, report.INCONCLUSIVE), ((float("nan"), float("nan")), True, report.INCONCLUSIVE),
])
def test_a_ratio_claim_is_decided_from_its_interval(interval, above, status):
    lab = report.LabReport("99_test")
    c = lab.check_ratio("B is faster than A", 1.05, interval, threshold=1.0, above=above, why="kernel time")
    assert c.status == status and c.value == 1.05
    if status != report.HOLDS:
        assert c.why and "\n" not in c.why and c.why.endswith("kernel time")
    if status == report.INCONCLUSIVE and interval[0] == interval[0]:   # an interval, not NaN
        assert f"{interval[0]:.2f}x-{interval[1]:.2f}x straddles 1.00x" in c.why
    assert lab.unexplained() == []


def test_inconclusive_is_counted_saved_and_shown(tmp_path, monkeypatch):
    from common import bench

    monkeypatch.setenv("TRTLABS_RESULTS", str(tmp_path))
    lab = report.LabReport("99_test")
    cmp = bench.Comparison("a", "b", 1.0, 0.98, 5.0, 5.0, (1.0, 1.1, 0.9, 1.0, 1.05), (0.98, 1.0, 0.95, 1.02, 0.97))
    c = lab.check_comparison("b is faster than a", cmp, threshold=1.0)
    assert c.status == report.INCONCLUSIVE and "judged on event time over 5 passes" in c.why
    lab.check("latency under 1 ms", 1.7, False, fmt="{:.1f} ms")
    assert lab.counts() == {report.HOLDS: 0, report.FAILS: 1, report.INCONCLUSIVE: 1, report.NOT_APPLICABLE: 0}
    assert [x.claim for x in lab.unexplained()] == ["latency under 1 ms"]
    data = json.loads(open(lab.save()).read())
    assert [x["status"] for x in data["claims"]] == ["inconclusive", "does not hold"]
    assert data["claims"][0]["interval"] == list(cmp.interval)


def test_tables_cut_nothing_and_render_as_html():
    lab = report.LabReport("99_test")
    long_why = ("CUDA events need a GPU; on a CPU the harness times the host, which is a different question "
                "from the one this claim asks <and> says so")
    lab.not_applicable("a claim " * 20, long_why)
    lab.check("speedup", 2.5, True, fmt="{:.1f}x")
    text = lab.table()
    assert str(lab) == text
    def column(i):   # a column's text, its continuation lines joined
        return " ".join(" ".join(line.split("|")[i].split()) for line in text.splitlines()[2:])

    assert column(0).count("a claim") == 20 and " ".join(long_why.split()) in column(-1)   # wrapped, not cut
    assert max(len(line) for line in text.splitlines()) < 190
    page = lab._repr_html_()
    assert page.count("<tr>") == 3 and "&lt;and&gt;" in page and report.STATUS_COLOURS[report.HOLDS] in page
    assert "text-align:right" in page and "1 holds, 1 not applicable here" in page


def test_sweep_tables_render_as_html_and_show_the_regime_where_rows_carry_kernel_time():
    from common import sweeps

    rows = [{"batch": 1, "latency_ms": 1.33, "kernel_ms": 0.071, "gpu_busy": 0.053, "regime": "host-bound"},
            {"batch": 64, "latency_ms": 5.2, "kernel_ms": 5.0, "gpu_busy": 0.96, "regime": "device-bound"}]
    table = sweeps.format_table(rows, ["batch", "latency_ms"])
    assert isinstance(table, str) and table.columns == ["batch", "latency_ms", "gpu_busy", "regime"]
    assert "96%" in table and "host-bound" in table.splitlines()[2]
    assert sweeps.format_table(rows, ["batch", "latency_ms"], kernel_columns=False).columns == ["batch", "latency_ms"]
    cpu_rows = [dict(r, kernel_ms=float("nan"), gpu_busy=float("nan"), regime="cpu") for r in rows]
    assert sweeps.format_table(cpu_rows, ["batch", "latency_ms"]).columns == ["batch", "latency_ms"]
    page = table._repr_html_()
    assert page.count("<tr>") == 3 and "text-align:right" in page and ">host-bound<" in page


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


def test_a_title_wider_than_its_axes_is_wrapped_not_clipped(tmp_path):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=plots.FIGSIZE, dpi=plots.DPI)
    long = "Low precision against FP16 on the digits CNN: accuracy and speed of every precision (small scale)"
    left.set(title=long, xlabel="batch", ylabel="ms")
    right.set_title("short")
    plots.fit_titles(fig)
    renderer = fig.canvas.get_renderer()
    box = left.title.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width, "the title crosses the figure's edge"
    assert "\n" in left.get_title() and right.get_title() == "short"
    png = plots.finish_figure(fig, [{"x": 1}], tmp_path / "wide", show=False)
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (int(plots.FIGSIZE[0] * plots.DPI), int(plots.FIGSIZE[1] * plots.DPI))
        assert image.text["Title"] == f"{long} | short"          # the caption keeps the title unwrapped
        assert image.text["Description"] == "ms against batch"
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["wide.csv", "wide.png"]   # no temporaries


_WRITER = """
import os, sys, time
from pathlib import Path
from common import report
lab = report.LabReport("99_race")
Path(sys.argv[2], "ready-" + str(os.getpid())).touch()
end = time.monotonic() + float(sys.argv[1])
i = 0
while time.monotonic() < end:
    lab.check("claim " + str(i), i, True, why="w" * 200_000)   # a large file widens the window of a torn write
    lab.save()
    i += 1
"""

_READER = """
import sys, time
from pathlib import Path
from common import course_report
results = Path(sys.argv[2])
start = time.monotonic()
while len(list(results.parent.glob("ready-*"))) < 3 and time.monotonic() < start + 60:
    time.sleep(0.05)   # read while the writers write
end = time.monotonic() + float(sys.argv[1])
ok = torn = 0
while time.monotonic() < end:
    data, problem = course_report._claims(results, "99_race", None)
    ok += data is not None
    torn += bool(problem)
print(ok, torn)
"""


def test_claims_are_never_read_half_written_by_concurrent_processes(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from common.env import project_root

    results = tmp_path / "results"
    env = dict(os.environ, TRTLABS_RESULTS=str(results), PYTHONPATH=str(project_root()))
    seconds = "4"
    monkeypatch.setenv("TRTLABS_RESULTS", str(results))
    report.LabReport("99_race").save()   # a file to start from
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, seconds, str(tmp_path)], env=env) for _ in range(3)]
    procs += [subprocess.Popen([sys.executable, "-c", _READER, seconds, str(results)], env=env,
                               stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "a writer or reader crashed"
    counts = [tuple(map(int, out.split())) for out in outputs if out]
    assert all(ok > 0 for ok, _ in counts)
    assert sum(torn for _, torn in counts) == 0, f"torn reads (ok, torn) per reader: {counts}"
    assert sorted(p.name for p in (results / "99_race").iterdir()) == ["claims.json"]


def test_a_full_disk_keeps_the_previous_claims_whole(tmp_path, monkeypatch):
    import errno
    import os

    import tmpfs
    from common import course_report, files

    disk = tmp_path / "disk"
    with tmpfs.mounted(disk, size="256k") as real:
        monkeypatch.setenv("TRTLABS_RESULTS", str(disk))
        lab = report.LabReport("99_full")
        lab.check("first", 1, True)
        lab.save()
        before = (disk / "99_full" / "claims.json").read_text()
        if real:   # fill the filesystem, leaving less than the next claims file needs
            fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
            try:
                with pytest.raises(OSError):
                    while True:
                        os.write(fd, b"\0" * 4096)
            finally:
                os.close(fd)
        else:
            def no_space(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            monkeypatch.setattr(files.os, "fsync", no_space)
        lab.check("second", 2, True, why="x" * 100_000)
        with pytest.raises(OSError) as failure:
            lab.save()
        assert failure.value.errno == errno.ENOSPC
        assert (disk / "99_full" / "claims.json").read_text() == before     # was truncated in place
        assert [p.name for p in (disk / "99_full").iterdir()] == ["claims.json"]
        data, problem = course_report._claims(disk, "99_full", None)
        assert problem == "" and [c["claim"] for c in data["claims"]] == ["first"]
