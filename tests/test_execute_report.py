"""The headless runner (subset, scale, time budget, plan, failures, Ctrl-C) and the HTML report it writes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from common import course_report, durations, execute
from common.env import project_root

ROOT = project_root()


def _notebook(path: Path, title: str, *code: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {title}\nintro"),
                                         *(nbformat.v4.new_code_cell(c) for c in code)])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _env(tmp_path: Path) -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                TRTLABS_CACHE=str(tmp_path / "cache"))


# -- arguments: each wrong one is a clear error before any work, with a non-zero status ------------

def test_select_by_number_and_unknown_lab_is_refused(tmp_path):
    nbs = [tmp_path / "00_a.ipynb", tmp_path / "03_b.ipynb", tmp_path / "11_c.ipynb"]
    assert execute.select(nbs, "3, 11") == nbs[1:]
    assert execute.select(nbs, None) == nbs
    with pytest.raises(execute.UsageError, match="no lab numbered 05"):
        execute.select(nbs, "05")
    with pytest.raises(execute.UsageError, match="'abc' is not one"):
        execute.select(nbs, "abc")          # was a ValueError traceback
    with pytest.raises(execute.UsageError, match="names no lab"):
        execute.select(nbs, " , ")          # ran nothing, exit 0


@pytest.mark.parametrize("argv, message", [
    (["--labs", "abc"], "is not one"),
    (["--labs", " , "], "names no lab"),
    (["--budget-min", "0"], "positive number of minutes"),    # meant "no limit"
    (["--budget-min", "-5"], "positive number of minutes"),   # skipped everything, exit 0
    (["--budget-min", "nan"], "positive number of minutes"),
    (["missing.ipynb"], "not a notebook file"),
])
def test_bad_arguments_stop_before_any_lab_with_status_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TRTLABS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as stop:
        execute.main([*argv, "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("usage: python -m common.execute")
    assert not (tmp_path / "out").exists()


def test_a_missing_labs_folder_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(execute, "project_root", lambda: tmp_path)   # a checkout without labs/
    with pytest.raises(SystemExit) as stop:
        execute.main(["--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "no lab notebooks" in capsys.readouterr().err


def test_an_unwritable_output_folder_is_found_before_the_labs_run(tmp_path, monkeypatch, capsys):
    not_a_folder = tmp_path / "out"
    not_a_folder.write_text("a file")
    monkeypatch.setenv("TRTLABS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(execute, "execute", lambda *a, **k: pytest.fail("a lab ran"))
    with pytest.raises(SystemExit) as stop:
        execute.main(["--labs", "00", "--out", str(not_a_folder)])
    assert stop.value.code == 2 and "--out" in capsys.readouterr().err


def test_help_names_the_command_users_type():
    assert execute._parser().format_usage().startswith("usage: python -m common.execute")


# -- the planner: durations per machine and scale -------------------------------------------------

def test_budget_plan_skips_labs_that_no_longer_fit(tmp_path):
    nbs = [tmp_path / f"0{i}_l.ipynb" for i in range(3)]
    seconds = {"00_l": 100, "01_l": 400, "02_l": 50}
    chosen, skipped = execute.plan(nbs, 200, seconds)
    assert chosen == [nbs[0], nbs[2]]
    assert len(skipped) == 1 and skipped[0].startswith("01_l: needs about 400 s")
    assert execute.plan(nbs, None, seconds) == (nbs, [])


RECORDS = {"NVIDIA H100 80GB HBM3": {"full": {"00_tour": 20.0, "01_batching": 90.0}},
           "cpu, 2 cores": {"small": {"00_tour": 15.0, "01_batching": 30.0}},
           "cpu, 16 cores": {"small": {"00_tour": 5.0}}}


def test_durations_come_from_this_machine_and_scale_or_say_they_are_estimated():
    own = durations.estimate("cpu, 2 cores", "small", RECORDS)
    assert own.exact and own.seconds["01_batching"] == 30.0 and "recorded on this machine" in own.note
    # A 2-core CPU at small scale is never planned with the H100's full-scale times.
    near = durations.estimate("cpu, 4 cores", "small", RECORDS)
    assert not near.exact and near.machine == "cpu, 2 cores" and "estimating from cpu, 2 cores" in near.note
    gpu = durations.estimate("NVIDIA A100-SXM4-80GB", "full", RECORDS)
    assert gpu.machine == "NVIDIA H100 80GB HBM3" and "estimating" in gpu.note
    assert durations.estimate("cpu, 2 cores", "small", {}).seconds == {}


def test_durations_are_recorded_per_machine_and_scale_atomically(tmp_path, capsys):
    path = tmp_path / "durations.json"
    durations.record(path, "cpu, 2 cores", "small", {"00_tour": 12.34})
    durations.record(path, "cpu, 2 cores", "full", {"00_tour": 99.0})
    durations.record(path, "cpu, 2 cores", "small", {"01_batching": 30.0})
    assert durations.load(path) == {"cpu, 2 cores": {"small": {"00_tour": 12.3, "01_batching": 30.0},
                                                     "full": {"00_tour": 99.0}}}
    assert [p.name for p in tmp_path.iterdir()] == ["durations.json"]   # no temporary left
    path.write_text("{torn")
    assert durations.load(path) == {} and "cannot be read" in capsys.readouterr().err


def test_the_committed_record_holds_the_committed_notebooks_durations():
    committed = durations.load(durations.COMMITTED)
    for path in execute.lab_notebooks():
        meta = json.loads(path.read_text())["metadata"].get("trtlabs", {})
        if not meta.get("machine"):
            continue
        machine = meta.get("recorded_as") or meta["machine"].split(" (sm_")[0]
        assert committed[machine][meta["scale"]][path.stem] == pytest.approx(meta["seconds"]), path.stem


def test_plan_prints_what_fits_from_which_durations_and_runs_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRTLABS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(durations, "COMMITTED", tmp_path / "none.json")
    durations.record(durations.local_file(), durations.machine_key(), "small", {"00_tour": 30.0, "01_batching": 200.0})
    monkeypatch.setattr(execute, "execute", lambda *a, **k: pytest.fail("--plan ran a lab"))
    assert execute.main(["--plan", "--labs", "00,01", "--scale", "small", "--budget-min", "1"]) == 0
    out = capsys.readouterr().out
    assert "recorded on this machine" in out and "at small scale" in out
    assert "00_tour" in out and "runs" in out and "01_batching" in out and "skipped: needs about 200 s" in out
    monkeypatch.setattr(durations, "machine_key", lambda env=None: "cpu, 3 cores")
    execute.main(["--plan", "--labs", "00", "--scale", "small"])
    assert "estimating from" in capsys.readouterr().out


# -- one notebook: a failure keeps its notebook and its whole error -------------------------------

def test_execute_writes_outputs_and_records_duration_apart_from_the_source(tmp_path):
    src = _notebook(tmp_path / "labs" / "00_tiny.ipynb", "Lab 00 — tiny", "print(6 * 7)")
    out = tmp_path / "out" / "00_tiny.ipynb"
    run = execute.execute(src, out, timeout_s=120, progress=False)
    done = nbformat.read(out, as_version=4)
    assert run.status == "ran" and done.cells[1].outputs[0]["text"] == "42\n"
    assert done.metadata["trtlabs"]["seconds"] == pytest.approx(run.seconds, abs=0.1)
    assert not nbformat.read(src, as_version=4).cells[1].get("outputs")   # the source is untouched


def test_a_failed_lab_keeps_its_partial_notebook_and_the_end_of_its_error(tmp_path):
    src = _notebook(tmp_path / "labs" / "01_bad.ipynb", "Lab 01 — bad", "x = 1",
                    "raise OSError(28, 'No space left on device: ' + 'x' * 3000 + ' THE END')", "print('after')")
    nb = nbformat.read(src, as_version=4)
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="committed output\n")]
    nbformat.write(nb, src)
    out = tmp_path / "out" / "01_bad.ipynb"
    run = execute.execute(src, out, timeout_s=120, progress=False)
    assert run.status == "failed" and run.cell == 3 and run.execution_count == 2
    # str(exc)[:2000] dropped the message's end; the error now ends with the exception's own last line.
    assert run.error.rstrip().endswith("THE END") and "OSError: [Errno 28]" in run.error
    partial = nbformat.read(out, as_version=4)
    assert partial.cells[2].outputs[0]["output_type"] == "error"
    assert partial.cells[3].outputs == []          # not run, and no committed output passes for this run's
    assert partial.metadata["trtlabs"]["status"] == "failed"


# -- the command: report of what ran, failures listed, no earlier run's claims ------------------

def _claims_cell(lab: str) -> str:
    return (f"from common import report\nlab = report.LabReport('{lab}')\n"
            "lab.check('two is more than one', 2, 2 > 1)\nprint(lab.save())")


def test_command_line_lists_failed_labs_and_never_shows_an_earlier_runs_claims(tmp_path):
    labs = tmp_path / "labs"
    _notebook(labs / "00_one.ipynb", "Lab 00 — one", _claims_cell("00_one"))
    _notebook(labs / "01_two.ipynb", "Lab 01 — two", "raise RuntimeError('the dataset is missing: run make data')")
    _notebook(labs / "02_three.ipynb", "Lab 02 — three", "print('not run')")
    out = tmp_path / "out"
    earlier = out / "results" / "01_two"     # a reused --out: the previous run of lab 01 succeeded
    earlier.mkdir(parents=True)
    (earlier / "claims.json").write_text(json.dumps({"lab": "01_two", "written_at": "2020-01-01T00:00:00+00:00",
                                                     "claims": [{"claim": "EARLIER CLAIM", "measured": "1",
                                                                 "status": "holds", "why": ""}]}))
    run = subprocess.run([sys.executable, "-m", "common.execute", str(labs / "00_one.ipynb"),
                          str(labs / "01_two.ipynb"), str(labs / "02_three.ipynb"), "--labs", "0,1", "--scale",
                          "small", "--out", str(out), "--report"], cwd=ROOT, env=_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "[1/2] 00_one.ipynb" in run.stdout and "02_three" not in run.stdout
    assert "FAILED in cell 2" in run.stdout and "run make data" in run.stdout
    assert "without encryption" not in run.stderr       # the kernel runs over IPC, no TCP warning
    assert (out / "notebooks" / "01_two.ipynb").exists()
    claims = json.loads((out / "results" / "00_one" / "claims.json").read_text())
    assert claims["claims"][0]["status"] == "holds"
    html = (out / "report.html").read_text()
    assert 'id="00_one"' in html and "two is more than one" in html
    assert 'id="01_two"' in html and "This lab failed in cell 2" in html and "run make data" in html
    assert "EARLIER CLAIM" not in html
    timings = json.loads((out / "timings.json").read_text())
    assert timings["scale"] == "small" and timings["labs"]["01_two.ipynb"]["status"] == "failed"
    recorded = durations.load(tmp_path / "cache" / "durations.json")
    assert list(recorded[durations.machine_key()]["small"]) == ["00_one"]   # only what finished


def test_ctrl_c_stops_the_run_keeps_what_ran_and_writes_the_report(tmp_path):
    labs, marker = tmp_path / "labs", tmp_path / "kernel.pid"
    _notebook(labs / "00_slow.ipynb", "Lab 00 — slow",
              f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)", "print('after')")
    _notebook(labs / "01_next.ipynb", "Lab 01 — next", "print('must not run')")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "common.execute", str(labs / "00_slow.ipynb"),
                             str(labs / "01_next.ipynb"), "--out", str(out), "--report"], cwd=ROOT,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), "the kernel never started the cell"
        proc.send_signal(signal.SIGINT)                 # what Ctrl-C sends the runner
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output              # was: "lab failed", then the next lab started
    assert "interrupted (00_slow.ipynb, cell 2" in output and "01_next" not in output.split("interrupted")[0]
    timings = json.loads((out / "timings.json").read_text())
    assert list(timings["labs"]) == ["00_slow.ipynb"] and timings["labs"]["00_slow.ipynb"]["status"] == "interrupted"
    assert "interrupted" in (out / "report.html").read_text()
    kernel = int(marker.read_text())
    deadline = time.monotonic() + 20
    while Path(f"/proc/{kernel}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{kernel}").exists(), "the interrupted lab's kernel was left running"


# -- kernels: started ahead of their lab, shut down behind it ---------------------------------------

_STARTED = ("import os\n"
            "ticks = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])   # field 22: start time\n"
            "btime = int(next(l for l in open('/proc/stat') if l.startswith('btime')).split()[1])\n"
            "started = btime + ticks / os.sysconf('SC_CLK_TCK')\n")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process start times from /proc")
def test_the_next_labs_kernel_starts_while_a_lab_runs_and_no_kernel_outlives_the_run(tmp_path):
    labs, first, second = tmp_path / "labs", tmp_path / "first.txt", tmp_path / "second.txt"
    _notebook(labs / "00_first.ipynb", "Lab 00 — first",
              f"import os, time\ntime.sleep(4)\nopen({str(first)!r}, 'w').write(f'{{os.getpid()}} {{time.time()}}')")
    _notebook(labs / "01_second.ipynb", "Lab 01 — second",
              _STARTED + "import sys\n"
              f"open({str(second)!r}, 'w').write(f'{{os.getpid()}} {{started}} {{\"torch\" in sys.modules}} "
              "{\"torch\" in dir()}')")
    run = subprocess.run([sys.executable, "-m", "common.execute", str(labs / "00_first.ipynb"),
                          str(labs / "01_second.ipynb"), "--out", str(tmp_path / "out")], cwd=ROOT,
                         env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    pid1, first_done = first.read_text().split()
    pid2, second_started, preloaded, bound = second.read_text().split()
    # lab 01's kernel was up before lab 00's 4-second cell ended (start times are good to about a second)
    assert float(second_started) < float(first_done) - 1.5
    # it imported torch while it waited, and the notebook's namespace holds no name for it
    assert (preloaded, bound) == ("True", "False")
    for pid in (pid1, pid2):
        assert not Path(f"/proc/{pid}").exists(), "a lab's kernel outlived the run"


def _kernel_pid(session: execute.LabSession) -> int:
    deadline = time.monotonic() + 120
    while not (session.client is not None and session.client.km is not None and session.client.km.has_kernel):
        assert time.monotonic() < deadline, "the kernel never started"
        time.sleep(0.1)
    return session.client.km.provisioner.pid


def test_a_kernel_started_ahead_for_a_lab_that_does_not_run_is_shut_down(tmp_path):
    session = execute.LabSession(_notebook(tmp_path / "labs" / "00_x.ipynb", "Lab 00 — x", "print(1)"))
    pid = _kernel_pid(session)
    session.cancel()
    assert session.wait_closed(60) and session.exc is None
    assert not Path(f"/proc/{pid}").exists(), "the waiting kernel was left running"


def test_a_waiting_kernel_can_be_killed_at_once(tmp_path):
    session = execute.LabSession(_notebook(tmp_path / "labs" / "00_x.ipynb", "Lab 00 — x", "print(1)"))
    pid = _kernel_pid(session)
    session.kill()
    session.cancel()
    assert session.wait_closed(60)
    assert not Path(f"/proc/{pid}").exists()


def test_preloading_refuses_what_is_not_a_module_name():
    assert execute._preload_line(("torch", "torch._dynamo")).startswith("exec(")
    for bad in ("torch; import os", "os\nimport sys", "", "torch.", 3):
        with pytest.raises(ValueError, match="not a module name"):
            execute._preload_line(("torch", bad))


_PROBE = ("import os, threading\n"
          "open(os.environ['PROBE_OUT'], 'w').write(f'{os.getpriority(os.PRIO_PROCESS, threading.get_native_id())} '\n"
          "                                         f'{threading.current_thread() is threading.main_thread()}')\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the nice value is per thread on Linux")
def test_the_preload_imports_in_a_lowest_priority_thread_binds_no_name_and_survives_a_broken_module(tmp_path,
                                                                                                    monkeypatch):
    (tmp_path / "trtlabs_probe.py").write_text(_PROBE)
    main_probe = _PROBE.replace("os.environ['PROBE_OUT']", "os.environ['PROBE_OUT'] + '.main'")
    (tmp_path / "trtlabs_main.py").write_text(main_probe)
    (tmp_path / "trtlabs_broken.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.setattr(execute, "PRELOAD", ("trtlabs_main",))   # torch's place: imported on the cells' thread
    line = execute._preload_line(("trtlabs_main", "trtlabs_broken", "trtlabs_probe", "trtlabs_missing"))
    script = (f"import os, sys\nbefore = os.getpriority(os.PRIO_PROCESS, 0)\nns = {{}}\nexec({line!r}, ns)\n"
              "print(before, os.getpriority(os.PRIO_PROCESS, 0), 'trtlabs_probe' in sys.modules,"
              " sorted(k for k in ns if not k.startswith('__')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path), PROBE_OUT=str(tmp_path / "probe.txt")))
    assert out.returncode == 0, out.stderr
    before, after, imported, names = out.stdout.split(maxsplit=3)
    assert (after, imported, names.strip()) == (before, "True", "[]")   # the cells' thread keeps its priority
    nice, in_main_thread = (tmp_path / "probe.txt").read_text().split()
    assert (int(nice), in_main_thread) == (execute.PRELOAD_NICE, "False")
    nice, in_main_thread = (tmp_path / "probe.txt.main").read_text().split()
    assert (nice, in_main_thread) == (before, "True")   # kineto registers on the thread that loads torch


def test_a_notebooks_preload_list_is_added_to_the_default_and_a_bad_one_stops_the_runner(tmp_path, capsys, monkeypatch):
    good = nbformat.v4.new_notebook(metadata={"trtlabs": {"preload": ["onnx", "torch", "torch._dynamo"]}})
    assert execute.preload_of(good, Path("01_x.ipynb")) == ("torch", "onnx", "torch._dynamo")
    assert execute.preload_of(nbformat.v4.new_notebook(), Path("01_x.ipynb")) == execute.PRELOAD
    for bad in ("onnx", ["onnx; import os"], [1]):
        nb = nbformat.v4.new_notebook(metadata={"trtlabs": {"preload": bad}})
        with pytest.raises(execute.UsageError, match="02_y.ipynb: metadata trtlabs.preload must be a list of module"):
            execute.preload_of(nb, Path("02_y.ipynb"))
    path = _notebook(tmp_path / "labs" / "00_bad.ipynb", "Lab 00 — bad", "print(1)")
    nb = nbformat.read(path, as_version=4)
    nb.metadata["trtlabs"] = {"preload": "onnx"}
    nbformat.write(nb, path)
    monkeypatch.setenv("TRTLABS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as stop:
        execute.main([str(path), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "00_bad.ipynb: metadata trtlabs.preload" in capsys.readouterr().err
    assert not (tmp_path / "out" / execute.TIMINGS_FILE).exists()   # no lab ran


def test_a_lab_kernel_imports_its_notebooks_preload_before_the_first_cell_and_keeps_the_declaration(tmp_path):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "trtlabs_probe.py").write_text(_PROBE)
    path = _notebook(tmp_path / "labs" / "00_pre.ipynb", "Lab 00 — preload",
                     "import sys\nprint('trtlabs_probe' in sys.modules, 'trtlabs_probe' in dir())",
                     "import torch\nfrom common import bench\nwith bench.device_profile('cpu'):\n    torch.ones(3) + 1")
    nb = nbformat.read(path, as_version=4)
    nb.metadata["trtlabs"] = {"preload": ["trtlabs_probe"]}
    nbformat.write(nb, path)
    env = _env(tmp_path)
    env.update(PYTHONPATH=os.pathsep.join([env["PYTHONPATH"], str(tmp_path / "mods")]),
               PROBE_OUT=str(tmp_path / "probe.txt"))
    run = subprocess.run([sys.executable, "-m", "common.execute", str(path), "--out", str(tmp_path / "out")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    done = nbformat.read(tmp_path / "out" / "notebooks" / "00_pre.ipynb", as_version=4)
    assert done.cells[1].outputs[0]["text"].split() == ["True", "False"]   # imported ahead, no name bound
    assert done.metadata["trtlabs"]["preload"] == ["trtlabs_probe"] and "seconds" in done.metadata["trtlabs"]
    # torch was loaded on the cells' thread: its profiler does not print "External init callback must run
    # in same thread as registerClient" into the first cell that profiles (it did when a thread loaded it)
    assert "registerClient" not in json.dumps([c.outputs for c in done.cells if c.cell_type == "code"])
    if sys.platform.startswith("linux"):
        assert (tmp_path / "probe.txt").read_text().split() == [str(execute.PRELOAD_NICE), "False"]


# -- the report ------------------------------------------------------------------------------------

def _png(path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common import plots

    fig, ax = plt.subplots(figsize=plots.FIGSIZE, dpi=plots.DPI)
    ax.plot([1, 2], [3, 4])
    ax.set(title=title, xlabel="batch size", ylabel="images/s")
    plots.finish_figure(fig, [{"x": 1}], path, show=False)


def _fake_run(out: Path) -> None:
    started = "2030-01-01T00:00:00+00:00"
    for lab, status in (("00_tour", "holds"), ("01_batching", "does not hold")):
        _notebook(out / "notebooks" / f"{lab}.ipynb", f"Lab {lab[:2]} — {lab[3:]}", "1")
        res = out / "results" / lab
        res.mkdir(parents=True)
        (res / "claims.json").write_text(json.dumps({
            "lab": lab, "written_at": "2030-01-01T00:01:00+00:00", "figures": [],
            "environment": {"machine": "Test GPU", "backend": "PyTorch (CUDA)", "torch": "2.x"},
            "kernel_time_pass": {"pass_seconds": 0.6 if lab == "00_tour" else 0.0,
                                 "passes": 20 if lab == "00_tour" else 0},
            "claims": [{"claim": f"{lab} <claim>", "measured": "1.5x", "status": status, "why": "because"},
                       {"claim": f"{lab} needs trt", "measured": "-", "status": "not applicable here",
                        "why": "TensorRT is not installed"}]}))
    _png(out / "results" / "00_tour" / "throughput", "Throughput against batch size")
    time.sleep(0.05)
    _png(out / "results" / "00_tour" / "latency", "Latency against batch size")
    (out / "timings.json").write_text(json.dumps({
        "started_at": started, "machine": "Test GPU",
        "labs": {"00_tour.ipynb": {"status": "ran", "seconds": 12.0, "notebook": "notebooks/00_tour.ipynb"},
                 "01_batching.ipynb": {"status": "ran", "seconds": 3.0, "notebook": "notebooks/01_batching.ipynb"},
                 "02_streams.ipynb": {"status": "failed", "seconds": 1.0, "notebook": "notebooks/02_streams.ipynb",
                                      "error": "Traceback ...\nOSError: [Errno 28] No space left on device", "cell": 4}},
        "skipped": ["03_cuda_graphs: needs about 30 s, 5 s of the budget left"],
        "total_seconds": 16.0, "scale": "small"}))


def test_report_has_a_section_per_lab_with_claims_statuses_and_figures(tmp_path):
    _fake_run(tmp_path)
    text = course_report.write_report(tmp_path).read_text()
    assert 'id="00_tour"' in text and 'id="01_batching"' in text and 'id="02_streams"' in text
    assert "Test GPU" in text and "PyTorch (CUDA)" in text
    assert "00_tour &lt;claim&gt;" in text                       # escaped, not raw HTML
    assert "class=holds>holds" in text and "class=fails>does not hold" in text
    assert text.count("data:image/png;base64,") == 2
    assert "This lab failed in cell 4" in text and "No space left on device" in text
    assert "03_cuda_graphs was skipped for time" in text
    assert "<script" not in text and "3 labs in 16 s" in text
    # what reading kernel time cost each lab, against its run time; nothing where no pass ran
    assert "ran in 12 s · kernel-time pass 0.60 s (5.0%) · backend" in text
    assert "ran in 3 s · backend" in text


def test_report_header_says_what_produced_the_results_and_what_did_not_run(tmp_path):
    _fake_run(tmp_path)
    text = course_report.build_html(tmp_path)
    lead = text.split("<p class=lead>", 1)[1].split("</p>", 1)[0]
    assert lead.startswith("Every result below was produced by PyTorch (CUDA) on Test GPU")
    assert "2 of 3 labs ran to the end (02_streams did not)" in lead and "2 experiments could not run" in lead
    assert "2 experiments did not run because TensorRT is not installed" in text


def test_report_figures_are_captioned_with_what_they_show_in_the_order_drawn(tmp_path):
    _fake_run(tmp_path)
    section = course_report.build_html(tmp_path).split('id="00_tour"', 1)[1].split("</section>", 1)[0]
    captions = [c.split("</figcaption>")[0] for c in section.split("<figcaption>")[1:]]
    assert captions == ["<b>Figure 1.</b> Throughput against batch size — images/s against batch size.",
                        "<b>Figure 2.</b> Latency against batch size — images/s against batch size."]


def test_report_survives_a_corrupt_or_missing_claims_file_with_a_warning(tmp_path, capsys):
    _fake_run(tmp_path)
    (tmp_path / "results" / "00_tour" / "claims.json").write_text('{"lab": "00_tour", "clai')   # truncated
    (tmp_path / "results" / "01_batching" / "claims.json").unlink()
    text = course_report.write_report(tmp_path).read_text()
    assert "the claims of 00_tour (claims.json) cannot be read" in text
    assert "warning: the claims of 00_tour" in capsys.readouterr().err
    assert 'id="01_batching"' in text


def test_report_without_a_run_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="make report"):
        course_report.build_html(tmp_path)


def test_progress_bars_leave_no_residue_in_executed_notebooks():
    from common.execute import without_progress_bars

    bars = "sweep:   0%|          | 0/50 [00:00<?, ?it/s]\rsweep:  16%|█▌        | 8/50 [00:02<00:10,  3.88it/s]\n"
    outputs = [{"output_type": "stream", "name": "stderr", "text": bars},
               {"output_type": "stream", "name": "stderr", "text": "a real warning\n" + bars},
               {"output_type": "stream", "name": "stdout", "text": "50%|x| 1/2 [..]\n"}]
    kept = without_progress_bars(outputs)
    assert [o["text"] for o in kept] == ["a real warning\n", "50%|x| 1/2 [..]\n"]
