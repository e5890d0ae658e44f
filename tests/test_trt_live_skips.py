"""The live TensorRT suite on a machine without TensorRT: every test skipped with one line saying why."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(env.has("tensorrt"), reason="TensorRT is here: make test-trt runs the suite for real")
def test_the_live_suite_skips_cleanly_with_the_reason(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "tests/trt_live", "-m", "trt", "-rs", "-q",
                           "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TRTLABS_RESULTS": str(tmp_path)})
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert " passed" not in out and " failed" not in out and " skipped" in out, out
    reasons = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert reasons and all("live TensorRT test: " in line for line in reasons), out
    assert "TensorRT self-test: not run (" in out
    assert not (tmp_path / "trt-selftest.json").exists()   # nothing ran, so nothing is claimed
