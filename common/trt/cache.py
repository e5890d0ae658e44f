"""Engine cache on disk: one plan per (model, plugin sources, build config, TensorRT version, GPU).

Introduced in lab 01 (batching), whose sweeps would otherwise rebuild the same engines on every run.
An engine is only valid for the TensorRT version and GPU that built it, and a change to the model
(its ONNX bytes and every external-data file it references), to the source of a plugin it uses (an
ahead-of-time plugin's kernel is baked into the plan) or to any build setting gives a different
engine, so all of them go into the key.

Each entry is one file, ``<key>.engine``: a header (the metadata as JSON) followed by the plan,
written to a temporary file and renamed into place in one step, so that a reader sees a whole entry
or none, even while other processes write the same key. An entry that cannot be trusted (a damaged
header, a plan whose checksum does not match, an entry written by another TensorRT or GPU) is
deleted with a warning and the engine is rebuilt: a stale plan must never be loaded silently. An
entry that merely cannot be read (a permission problem) is left alone.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from common.files import write_atomic

from .config import BuildConfig

_KEY = re.compile(r"^[0-9a-f]{16,128}$")
_MAGIC = b"TRTLABS-ENGINE-1\n"
_LENGTH_BYTES = 8
#: A temporary file this old is left over from a writer that died (killed during ``put``).
STALE_SECONDS = 3600.0


class EngineCacheWarning(UserWarning):
    """A cache entry was unusable (deleted, the engine is rebuilt) or the cache could not be used."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- what the model is made of -------------------------------------------------------------------

def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of an ONNX graph, its nodes' attributes and subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def _nodes(graph: Any) -> Iterator[Any]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _nodes(attr.g)
            for sub in attr.graphs:
                yield from _nodes(sub)


def _parse_onnx(data: bytes) -> Any | None:
    """The ModelProto (external data not loaded), or None when `data` is not an ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load_from_string(data)
    except DecodeError:
        return None


def custom_ops(model: Any) -> list[str]:
    """``domain::op`` of every node outside the standard ONNX domains: the plugins a model uses."""
    if model is None:
        return []
    standard = {"", "ai.onnx", "ai.onnx.ml"}
    found = {f"{n.domain}::{n.op_type}" for n in _nodes(model.graph) if n.domain not in standard}
    for function in model.functions:
        found |= {f"{n.domain}::{n.op_type}" for n in function.node if n.domain not in standard}
    local = {f"{f.domain}::{f.name}" for f in model.functions}   # model-local functions are not plugins
    return sorted(found - local)


def external_data_files(model: Any) -> list[str]:
    """The ``location`` of every external-data file the model's tensors reference, relative to it."""
    if model is None:
        return []
    import onnx

    locations = set()
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations |= {e.value for e in tensor.external_data if e.key == "location"}
    return sorted(locations)


def model_fingerprint(onnx: str | os.PathLike[str] | bytes) -> dict[str, Any]:
    """sha256 of the ONNX bytes and of each external-data file it references, and its custom ops.

    A model given as bytes has no folder, so only the bytes count. A referenced file that is missing
    is recorded as such (TensorRT's parser will then say so).
    """
    if isinstance(onnx, (bytes, bytearray, memoryview)):
        data, folder = bytes(onnx), None
    else:
        path = Path(onnx)
        data, folder = path.read_bytes(), path.parent
    model = _parse_onnx(data)
    external: dict[str, str | None] = {}
    if folder is not None:
        for location in external_data_files(model):
            file = folder / location
            external[location] = _file_sha256(file) if file.is_file() else None
    return {"onnx_sha256": _sha256(data), "external_data": external, "custom_ops": custom_ops(model)}


# -- plugin sources --------------------------------------------------------------------------------

_PLUGIN_SOURCES: dict[str, str] = {}


def _source_text(part: object) -> str:
    if isinstance(part, bytes):
        return part.decode("utf-8", "replace")
    if isinstance(part, str):
        return part
    source = getattr(part, "src", None)   # a triton.jit kernel keeps its source here
    if isinstance(source, str):
        return source
    try:
        return inspect.getsource(part)  # type: ignore[arg-type]
    except (OSError, TypeError):   # no source file (defined interactively): its bytecode still changes with it
        code = getattr(inspect.unwrap(part), "__code__", None)  # type: ignore[arg-type]
        return f"{code.co_code.hex()}{code.co_consts!r}{code.co_names!r}" if code is not None else repr(part)


def register_plugin_source(plugin_id: str, *parts: object) -> str:
    """Record what plugin `plugin_id` ("namespace::name") is made of, for the engine-cache key.

    Call it where the plugin is registered, with its kernel and implementation functions (or their
    source text): an engine that uses the plugin is then rebuilt when any of them changes. Returns
    the digest recorded.
    """
    if "::" not in plugin_id:
        raise ValueError(f"plugin id must be 'namespace::name', got {plugin_id!r}")
    if not parts:
        raise ValueError("register_plugin_source needs the plugin's functions or source text")
    digest = _sha256("\0".join(_source_text(p) for p in parts).encode())
    _PLUGIN_SOURCES[plugin_id] = digest
    return digest


def plugin_sources(ops: list[str]) -> dict[str, str | None]:
    """For each custom op of a model, its registered plugin's source digest (None if unregistered)."""
    return {op: _PLUGIN_SOURCES.get(op) for op in ops}


# -- the key ---------------------------------------------------------------------------------------

def cache_key(onnx: str | os.PathLike[str] | bytes, config: BuildConfig,
              trt_version: str | None, gpu_name: str | None,
              plugins: Mapping[str, str | None] | None = None) -> str:
    """sha256 over the model's fingerprint, the plugin sources, the canonical config JSON, the
    TensorRT version and the GPU name.

    Introduced in lab 01 (batching). Any change to any of them gives a different key. `plugins`
    (plugin id -> source digest) defaults to the registered sources of the model's custom ops.
    """
    model = model_fingerprint(onnx)
    if plugins is None:
        plugins = plugin_sources(model["custom_ops"])
    header = json.dumps({
        "model": model,
        "plugins": dict(plugins),
        "config": config.to_dict(),
        "tensorrt": trt_version,
        "gpu": gpu_name,
    }, sort_keys=True, separators=(",", ":"))
    return _sha256(header.encode())


# -- the store -------------------------------------------------------------------------------------

def _decode(data: bytes) -> tuple[dict[str, Any], bytes] | str:
    """(metadata, plan) from an entry file's bytes, or what is wrong with them."""
    if not data.startswith(_MAGIC):
        return "not an engine-cache entry (unknown header)"
    start = len(_MAGIC) + _LENGTH_BYTES
    length = int.from_bytes(data[len(_MAGIC):start], "big")
    if len(data) < start + length:
        return "truncated metadata"
    try:
        meta = json.loads(data[start:start + length])
    except ValueError:
        return "unreadable metadata JSON"
    if not isinstance(meta, dict):
        return "metadata is not a JSON object"
    return meta, data[start + length:]


class EngineCache:
    """A directory of ``<key>.engine`` files: a metadata header, then the plan.

    Introduced in lab 01 (batching). The metadata holds the key, the plan's sha256 and size, the
    TensorRT version, the GPU, the build config and ``build_seconds``. Safe for several processes at
    once: :meth:`put` replaces an entry in one rename, and a reader deletes a damaged entry only if
    it is still the file it read.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError(f"not a cache key (lowercase hex): {key!r}")
        return self.directory / f"{key}.engine"

    def remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def clean_stale(self, older_than_s: float = STALE_SECONDS) -> list[Path]:
        """Delete temporary files a killed writer left (older than `older_than_s`); returns them.

        A writer that is alive keeps its temporary file's modification time recent.
        """
        removed = []
        now = time.time()
        for tmp in self.directory.glob(".*.tmp"):
            try:
                if now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    removed.append(tmp)
            except FileNotFoundError:
                continue   # its writer finished or another process cleaned it
            except OSError:
                continue   # not ours to delete: leave it
        return removed

    def _discard(self, key: str, why: str, seen: os.stat_result) -> None:
        """Delete the damaged entry `seen` (the file a reader opened), never a newer one.

        The entry is renamed aside first; if what was taken is not the file read (another process
        replaced it since), it is linked back unless a still newer entry is already in place.
        """
        path = self._path(key)
        aside = path.with_name(f".{path.name}.{uuid.uuid4().hex}.discard.tmp")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return   # already gone: another process removed or is replacing it
        except OSError as exc:
            warnings.warn(f"engine cache entry {key[:12]}… in {self.directory} is unusable ({why}) and could "
                          f"not be deleted ({exc}); the engine will be rebuilt", EngineCacheWarning, stacklevel=3)
            return
        taken = os.stat(aside)
        if (taken.st_ino, taken.st_dev) != (seen.st_ino, seen.st_dev):
            try:
                os.link(aside, path)   # put back another process's good entry; fails if a newer one exists
            except OSError:
                pass
            os.unlink(aside)
            return
        os.unlink(aside)
        warnings.warn(f"engine cache entry {key[:12]}… in {self.directory} is unusable ({why}); "
                      "it was deleted and the engine will be rebuilt", EngineCacheWarning, stacklevel=3)

    def get_entry(self, key: str, *, trt_version: str | None = None,
                  gpu_name: str | None = None) -> tuple[bytes, dict[str, Any]] | None:
        """``(plan, metadata)`` of one consistent entry, or None. A damaged or mismatched entry is
        deleted with a warning; one that cannot be read is left in place with a warning.

        Pass ``trt_version`` and ``gpu_name`` to also reject an entry another machine wrote.
        """
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                seen = os.fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            return None   # a plain miss
        except OSError as exc:
            warnings.warn(f"engine cache entry {key[:12]}… in {self.directory} cannot be read ({exc}); it "
                          "was left in place and the engine will be built without the cache",
                          EngineCacheWarning, stacklevel=2)
            return None
        decoded = _decode(data)
        if isinstance(decoded, str):
            self._discard(key, decoded, seen)
            return None
        meta, plan = decoded
        expected: dict[str, Any] = {"key": key, "plan_sha256": _sha256(plan), "plan_bytes": len(plan)}
        if trt_version is not None:
            expected["trt_version"] = trt_version
        if gpu_name is not None:
            expected["gpu_name"] = gpu_name
        for field_name, value in expected.items():
            if meta.get(field_name) != value:
                self._discard(key, f"{field_name} is {meta.get(field_name)!r}, expected {value!r}", seen)
                return None
        return plan, meta

    def get(self, key: str, *, trt_version: str | None = None, gpu_name: str | None = None) -> bytes | None:
        """The cached plan, or None (see :meth:`get_entry`)."""
        entry = self.get_entry(key, trt_version=trt_version, gpu_name=gpu_name)
        return entry[0] if entry else None

    def meta(self, key: str) -> dict[str, Any] | None:
        """The entry's metadata as stored, or None when there is no readable entry."""
        try:
            data = self._path(key).read_bytes()
        except OSError:
            return None
        decoded = _decode(data)
        return None if isinstance(decoded, str) else decoded[0]

    def put(self, key: str, plan: bytes, meta: dict[str, Any]) -> Path:
        """Store `plan` with `meta` (trt_version, gpu_name, config, build_seconds, ...) in one atomic
        step; returns the entry's path. Raises OSError when the cache cannot be written (the caller
        keeps its engine)."""
        path = self._path(key)
        plan = bytes(plan)
        record = {**meta, "key": key, "plan_sha256": _sha256(plan), "plan_bytes": len(plan)}
        header = json.dumps(record, sort_keys=True, indent=1).encode()  # fails here, before any write
        self.clean_stale()
        write_atomic(path, _MAGIC + len(header).to_bytes(_LENGTH_BYTES, "big") + header + plan)
        return path
