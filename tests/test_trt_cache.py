"""Engine cache keys and the on-disk cache: every change changes the key; bad entries are rebuilt;
several processes building the same engine never lose or damage each other's entries."""

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from common.trt import cache as cache_module
from common.trt.cache import EngineCache, EngineCacheWarning, cache_key, register_plugin_source
from common.trt.config import BuildConfig, batch_profile

ROOT = Path(__file__).resolve().parents[1]
ONNX = b"\x08\x07fake-onnx-model-bytes"
TRT, GPU = "11.4.0.106", "NVIDIA H100 80GB HBM3"


def test_key_is_stable_and_hex():
    k = cache_key(ONNX, BuildConfig(), TRT, GPU)
    assert k == cache_key(ONNX, BuildConfig(), TRT, GPU)
    assert len(k) == 64 and int(k, 16) >= 0


@pytest.mark.parametrize("change", [
    dict(onnx=ONNX + b"!"),
    dict(config=BuildConfig(builder_optimization_level=5)),
    dict(config=BuildConfig(tf32=False)),
    dict(config=BuildConfig(profiles=(batch_profile("x", (3,), 1, 2, 4),))),
    dict(config=BuildConfig(tactic_sources={"JIT_CONVOLUTIONS"})),
    dict(trt="10.16.0.1"),
    dict(gpu="NVIDIA H200"),
])
def test_any_change_changes_the_key(change):
    args = dict(onnx=ONNX, config=BuildConfig(), trt=TRT, gpu=GPU)
    base = cache_key(args["onnx"], args["config"], args["trt"], args["gpu"])
    args.update(change)
    assert cache_key(args["onnx"], args["config"], args["trt"], args["gpu"]) != base


# -- what the model is made of -------------------------------------------------------------------

def two_weight_model(domain: str = "", op: str = "Add") -> onnx.ModelProto:
    """y = (x + a) * b with a and b as initializers (to be saved as external data)."""
    a = numpy_helper.from_array(np.arange(16, dtype=np.float32), "a")
    b = numpy_helper.from_array(np.ones(16, dtype=np.float32), "b")
    nodes = [helper.make_node(op, ["x", "a"], ["t"], domain=domain), helper.make_node("Mul", ["t", "b"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16])], [a, b])
    return helper.make_model(graph)


def save_external(model: onnx.ModelProto, path: Path) -> None:
    """Each initializer in its own file beside the model (named after the tensor), as onnx does."""
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=False,
                    size_threshold=0)


def test_path_and_bytes_agree_without_external_data(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save_model(two_weight_model(), str(model))
    assert cache_key(model, BuildConfig(), TRT, GPU) == cache_key(model.read_bytes(), BuildConfig(), TRT, GPU)


def test_every_referenced_external_data_file_counts(tmp_path):
    model = tmp_path / "m.onnx"
    save_external(two_weight_model(), model)
    assert cache_module.external_data_files(onnx.load(str(model), load_external_data=False)) == ["a", "b"]
    base = cache_key(model, BuildConfig(), TRT, GPU)
    (tmp_path / "m.onnx.data").write_bytes(b"not referenced by the model")   # the old guess at the name
    (tmp_path / "unrelated.bin").write_bytes(b"x")
    assert cache_key(model, BuildConfig(), TRT, GPU) == base
    keys = {base}
    for name in ("a", "b"):   # a weights-only change in either file rebuilds
        data = bytearray((tmp_path / name).read_bytes())
        data[0] ^= 0xFF
        (tmp_path / name).write_bytes(bytes(data))
        keys.add(cache_key(model, BuildConfig(), TRT, GPU))
    assert len(keys) == 3
    (tmp_path / "b").unlink()   # a missing file is part of the key too (the parser reports it)
    assert cache_key(model, BuildConfig(), TRT, GPU) not in keys


def test_plugin_source_changes_the_key_of_models_that_use_it(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "_PLUGIN_SOURCES", {})
    with_plugin, plain = tmp_path / "plugin.onnx", tmp_path / "plain.onnx"
    onnx.save_model(two_weight_model("trtlabs", "FusedLayerNorm"), str(with_plugin))
    onnx.save_model(two_weight_model(), str(plain))
    assert cache_module.model_fingerprint(with_plugin)["custom_ops"] == ["trtlabs::FusedLayerNorm"]
    before = {p: cache_key(p, BuildConfig(), TRT, GPU) for p in (with_plugin, plain)}
    register_plugin_source("trtlabs::FusedLayerNorm", "def kernel(): return 1")
    v1 = {p: cache_key(p, BuildConfig(), TRT, GPU) for p in (with_plugin, plain)}
    register_plugin_source("trtlabs::FusedLayerNorm", "def kernel(): return 2")   # the kernel was edited
    v2 = {p: cache_key(p, BuildConfig(), TRT, GPU) for p in (with_plugin, plain)}
    assert len({before[with_plugin], v1[with_plugin], v2[with_plugin]}) == 3
    assert before[plain] == v1[plain] == v2[plain]   # a model without the plugin is not rebuilt


def test_plugin_source_of_functions_and_triton_style_kernels(monkeypatch):
    monkeypatch.setattr(cache_module, "_PLUGIN_SOURCES", {})

    def impl():
        return 1

    class Kernel:   # triton.jit keeps the kernel's source in .src
        src = "def kernel(x_ptr): pass"

    digest = register_plugin_source("ns::op", impl, Kernel())
    assert cache_module.plugin_sources(["ns::op", "ns::other"]) == {"ns::op": digest, "ns::other": None}
    with pytest.raises(ValueError, match="namespace::name"):
        register_plugin_source("op", impl)


# -- the store -----------------------------------------------------------------------------------

META = {"trt_version": TRT, "gpu_name": GPU, "config": BuildConfig().to_dict(), "build_seconds": 1.5}


def entry(tmp_path, plan=b"PLAN" * 100):
    cache = EngineCache(tmp_path / "engines")
    key = cache_key(ONNX, BuildConfig(), TRT, GPU)
    cache.put(key, plan, META)
    return cache, key, cache.directory / f"{key}.engine"


def test_roundtrip_and_metadata_in_one_file(tmp_path):
    cache, key, path = entry(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(key, trt_version=TRT, gpu_name=GPU) == b"PLAN" * 100
        plan, meta = cache.get_entry(key)
    assert plan == b"PLAN" * 100 and meta == cache.meta(key)
    assert meta["key"] == key and meta["plan_bytes"] == 400 and len(meta["plan_sha256"]) == 64
    assert meta["trt_version"] == TRT and meta["gpu_name"] == GPU and meta["build_seconds"] == 1.5
    assert meta["config"]["profiling_verbosity"] == "detailed"
    assert [p.name for p in cache.directory.iterdir()] == [path.name]  # one file, no temporaries


def test_plain_miss_is_silent(tmp_path):
    cache = EngineCache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get("ab" * 32) is None and cache.meta("ab" * 32) is None


def header_length(path):
    return int.from_bytes(path.read_bytes()[len(cache_module._MAGIC):len(cache_module._MAGIC) + 8], "big")


def rewrite(path, edit):
    path.write_bytes(edit(bytearray(path.read_bytes())))


def corrupt_header(path):
    rewrite(path, lambda d: d[:len(cache_module._MAGIC) + 8] + b"{not json" + d[len(cache_module._MAGIC) + 17:])


def truncate_plan(path):
    rewrite(path, lambda d: d[:-10])


def truncate_header(path):
    rewrite(path, lambda d: d[:len(cache_module._MAGIC) + 8 + 5])


def flip_a_plan_byte(path):
    def flip(d):
        d[-5] ^= 0xFF
        return d
    rewrite(path, flip)


def unknown_format(path):
    path.write_bytes(b"PLAN" * 100)


def header_not_object(path):
    text = b"[1, 2]"
    rewrite(path, lambda d: cache_module._MAGIC + len(text).to_bytes(8, "big") + text + d[-400:])


@pytest.mark.parametrize("damage", [corrupt_header, truncate_plan, truncate_header, flip_a_plan_byte,
                                    unknown_format, header_not_object])
def test_damaged_entries_are_removed_with_a_warning(tmp_path, damage):
    cache, key, path = entry(tmp_path)
    damage(path)
    with pytest.warns(EngineCacheWarning, match="deleted and the engine will be rebuilt"):
        assert cache.get(key) is None
    assert not path.exists() and list(cache.directory.iterdir()) == []


@pytest.mark.parametrize("kwargs, field", [(dict(trt_version="10.16.0.1"), "trt_version"),
                                           (dict(gpu_name="NVIDIA A100"), "gpu_name")])
def test_entries_from_another_machine_are_rejected(tmp_path, kwargs, field):
    cache, key, path = entry(tmp_path)
    with pytest.warns(EngineCacheWarning, match=field):
        assert cache.get(key, **kwargs) is None
    assert not path.exists()


def test_an_entry_that_cannot_be_read_is_left_in_place(tmp_path):
    cache = EngineCache(tmp_path)
    key = "ab" * 32
    (tmp_path / f"{key}.engine").mkdir()   # open() fails with an OSError (IsADirectoryError), as for EACCES
    with pytest.warns(EngineCacheWarning, match="cannot be read .* left in place"):
        assert cache.get(key) is None
    assert (tmp_path / f"{key}.engine").is_dir()


def test_a_reader_never_deletes_an_entry_written_after_its_read(tmp_path):
    cache, key, path = entry(tmp_path)
    truncate_plan(path)
    seen = os.stat(path)                       # a reader read the damaged entry ...
    cache.put(key, b"GOOD" * 50, META)        # ... another process then wrote a good one ...
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache._discard(key, "truncated", seen)  # ... and the reader's discard must keep it
    assert cache.get(key) == b"GOOD" * 50
    assert [p.name for p in cache.directory.iterdir()] == [path.name]


def test_stale_temporaries_are_cleaned_and_live_ones_kept(tmp_path):
    cache = EngineCache(tmp_path)
    stale, live = tmp_path / ".x.engine.abc.tmp", tmp_path / ".y.engine.def.tmp"
    for f in (stale, live):
        f.write_bytes(b"partial")
    old = time.time() - 2 * cache_module.STALE_SECONDS
    os.utime(stale, (old, old))
    cache.put("ab" * 32, b"plan", META)
    assert not stale.exists() and live.exists()


def test_keys_are_validated(tmp_path):
    cache = EngineCache(tmp_path)
    with pytest.raises(ValueError, match="not a cache key"):
        cache.get("../../etc/passwd")
    with pytest.raises(ValueError, match="not a cache key"):
        cache.put("ABC", b"x", {})


def test_put_rejects_unserialisable_meta_before_writing(tmp_path):
    cache = EngineCache(tmp_path)
    with pytest.raises(TypeError):
        cache.put("ab" * 32, b"plan", {"config": object()})
    assert list(tmp_path.iterdir()) == []


# -- several processes at once -------------------------------------------------------------------

WORKER = textwrap.dedent("""\
    import json, sys, time, warnings
    from common.trt.cache import EngineCache

    folder, key, me, seconds, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    cache = EngineCache(folder)
    plans = {w: bytes([w]) * (200_000 + 7_919 * w) for w in range(8)}   # sizes differ, so a torn entry shows
    meta = {"trt_version": "T", "gpu_name": "G", "writer": me}
    stats = {"hits": 0, "misses": 0, "wrong": 0, "rounds": 0}
    deadline = time.monotonic() + seconds
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(rounds):
            if time.monotonic() > deadline:
                break
            found = cache.get_entry(key, trt_version="T", gpu_name="G")
            if found is None:
                stats["misses"] += 1
            else:
                plan, stored = found
                stats["hits"] += 1
                stats["wrong"] += plan != plans[stored["writer"]]
            cache.put(key, plans[me], meta)
            stats["rounds"] += 1
    stats["warnings"] = [str(w.message) for w in caught]
    print(json.dumps(stats))
""")


def test_concurrent_builders_of_one_engine_never_lose_or_tear_entries(tmp_path):
    """Four real processes read and write the same key for at most ~20 s: no exception, no warning,
    no torn entry, and a valid entry (and no temporary file) at the end."""
    processes, rounds, seconds = 4, 150, 15.0
    key = "cd" * 32
    folder = tmp_path / "engines"
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(folder), key, str(w), str(seconds), str(rounds)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for w in range(processes)]
    results = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=seconds + 60)
            assert worker.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for stats in results:
        assert stats["warnings"] == [] and stats["wrong"] == 0, stats
        assert stats["rounds"] > 0
    assert sum(s["hits"] for s in results) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan, meta = EngineCache(folder).get_entry(key, trt_version="T", gpu_name="G")
    assert plan == bytes([meta["writer"]]) * (200_000 + 7_919 * meta["writer"])
    assert [p.name for p in folder.iterdir()] == [f"{key}.engine"]


def test_a_plugin_defined_without_a_source_file_is_keyed_by_its_bytecode(monkeypatch):
    monkeypatch.setattr(cache_module, "_PLUGIN_SOURCES", {})
    digests = []
    for body in ("return 1", "return 2"):   # as a notebook cell defines it: no file for inspect to read
        scope: dict = {}
        exec(f"def kernel():\n    {body}\n", scope)
        digests.append(register_plugin_source("ns::op", scope["kernel"]))
    assert digests[0] != digests[1]
