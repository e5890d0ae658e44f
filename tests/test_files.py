"""common.files: a file is written whole or not at all, and keeps ordinary permissions."""

import os
import stat

import pytest

from common import files


def test_write_is_whole_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "claims.json"
    files.write_text_atomic(path, "old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space"):
        files.write_text_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["claims.json"]


def test_new_files_follow_the_umask_and_existing_ones_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "report.html"
        files.write_text_atomic(fresh, "x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        fresh.chmod(0o600)
        files.write_text_atomic(fresh, "y")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_read_json_tells_a_missing_file_from_a_corrupt_one(tmp_path):
    path = tmp_path / "claims.json"
    assert files.read_json(path) == (None, None)
    path.write_text('{"lab": "00_tour"}')
    assert files.read_json(path) == ({"lab": "00_tour"}, "")
    path.write_text('{"lab": "00_t')   # torn
    data, problem = files.read_json(path)
    assert data is None and problem.startswith("JSONDecodeError")
