"""Engine cache on disk: one plan per (ONNX bytes, build config, TensorRT version, GPU).

Introduced in lab 01 (batching), whose sweeps would otherwise rebuild the same engines on every run.
An engine is only valid for the TensorRT version and GPU that built it, and a change to the model
or to any build setting gives a different engine, so all four go into the key. A cache entry that
cannot be trusted (unreadable metadata, a plan whose checksum does not match, an entry written by
another TensorRT or GPU) is deleted with a warning and the engine is rebuilt: a stale plan must
never be loaded silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from common.files import write_atomic

from .config import BuildConfig

_KEY = re.compile(r"^[0-9a-f]{16,128}$")


class EngineCacheWarning(UserWarning):
    """A cache entry was unusable; it was deleted and the engine will be rebuilt."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _onnx_bytes(onnx: str | os.PathLike[str] | bytes) -> bytes:
    """The model's bytes; for a path, also those of its external-data file when there is one."""
    if isinstance(onnx, (bytes, bytearray, memoryview)):
        return bytes(onnx)
    path = Path(onnx)
    data = path.read_bytes()
    # torch.onnx.export writes large weights to "<model>.onnx.data": a weights-only change must
    # change the key too.
    external = path.with_name(path.name + ".data")
    if external.is_file():
        data += b"\0external-data\0" + external.read_bytes()
    return data


def cache_key(onnx: str | os.PathLike[str] | bytes, config: BuildConfig,
              trt_version: str | None, gpu_name: str | None) -> str:
    """sha256 over the ONNX bytes, the canonical config JSON, the TensorRT version and the GPU name.

    Introduced in lab 01 (batching). Any change to any of the four gives a different key.
    """
    header = json.dumps({
        "onnx_sha256": _sha256(_onnx_bytes(onnx)),
        "config": config.to_dict(),
        "tensorrt": trt_version,
        "gpu": gpu_name,
    }, sort_keys=True, separators=(",", ":"))
    return _sha256(header.encode())


class EngineCache:
    """A directory of ``<key>.plan`` files, each with a ``<key>.json`` of metadata.

    Introduced in lab 01 (batching). The metadata holds the key, the plan's sha256 and size, the
    TensorRT version, the GPU, the build config and ``build_seconds``. It is written after the plan,
    so a plan without metadata (an interrupted write) reads as a broken entry.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not _KEY.match(key):
            raise ValueError(f"not a cache key (lowercase hex): {key!r}")
        return self.directory / f"{key}.plan", self.directory / f"{key}.json"

    def remove(self, key: str) -> None:
        for path in self._paths(key):
            path.unlink(missing_ok=True)

    def _discard(self, key: str, why: str) -> None:
        warnings.warn(f"engine cache entry {key[:12]}… in {self.directory} is unusable ({why}); "
                      "it was deleted and the engine will be rebuilt", EngineCacheWarning, stacklevel=3)
        self.remove(key)

    def meta(self, key: str) -> dict[str, Any] | None:
        """The entry's metadata as stored, or None when there is none or it is not a JSON object."""
        meta_path = self._paths(key)[1]
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def get(self, key: str, *, trt_version: str | None = None, gpu_name: str | None = None) -> bytes | None:
        """The cached plan, or None. A broken or mismatched entry is deleted with a warning.

        Pass ``trt_version`` and ``gpu_name`` to also reject an entry another machine wrote.
        """
        plan_path, meta_path = self._paths(key)
        if not plan_path.exists() and not meta_path.exists():
            return None  # a plain miss
        if not plan_path.exists():
            self._discard(key, "metadata without a plan")
            return None
        meta = self.meta(key)
        if meta is None:
            self._discard(key, "missing or unreadable metadata JSON")
            return None
        plan = plan_path.read_bytes()
        expected = {"key": key, "plan_sha256": _sha256(plan), "plan_bytes": len(plan)}
        if trt_version is not None:
            expected["trt_version"] = trt_version
        if gpu_name is not None:
            expected["gpu_name"] = gpu_name
        for field_name, value in expected.items():
            if meta.get(field_name) != value:
                self._discard(key, f"{field_name} is {meta.get(field_name)!r}, expected {value!r}")
                return None
        return plan

    def put(self, key: str, plan: bytes, meta: dict[str, Any]) -> Path:
        """Store `plan` with `meta` (trt_version, gpu_name, config, build_seconds, ...); returns the plan's path."""
        plan_path, meta_path = self._paths(key)
        plan = bytes(plan)
        record = {**meta, "key": key, "plan_sha256": _sha256(plan), "plan_bytes": len(plan)}
        text = json.dumps(record, sort_keys=True, indent=1)  # fails here, before any write, if not JSON-able
        write_atomic(plan_path, plan)
        write_atomic(meta_path, text.encode())
        return plan_path
