"""Engine cache keys and the on-disk cache: every change changes the key; bad entries are rebuilt."""

import json
import warnings

import pytest

from common.trt.cache import EngineCache, EngineCacheWarning, cache_key
from common.trt.config import BuildConfig, batch_profile

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


def test_path_and_bytes_agree_and_external_data_counts(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(ONNX)
    assert cache_key(model, BuildConfig(), TRT, GPU) == cache_key(ONNX, BuildConfig(), TRT, GPU)
    (tmp_path / "m.onnx.data").write_bytes(b"weights-v1")
    with_weights = cache_key(model, BuildConfig(), TRT, GPU)
    assert with_weights != cache_key(ONNX, BuildConfig(), TRT, GPU)
    (tmp_path / "m.onnx.data").write_bytes(b"weights-v2")
    assert cache_key(str(model), BuildConfig(), TRT, GPU) != with_weights


def entry(tmp_path, plan=b"PLAN" * 100):
    cache = EngineCache(tmp_path / "engines")
    key = cache_key(ONNX, BuildConfig(), TRT, GPU)
    cache.put(key, plan, {"trt_version": TRT, "gpu_name": GPU, "config": BuildConfig().to_dict(), "build_seconds": 1.5})
    return cache, key, cache.directory / f"{key}.plan", cache.directory / f"{key}.json"


def test_roundtrip_and_metadata(tmp_path):
    cache, key, plan_path, meta_path = entry(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(key, trt_version=TRT, gpu_name=GPU) == b"PLAN" * 100
    meta = json.loads(meta_path.read_text())
    assert meta["key"] == key and meta["plan_bytes"] == 400 and len(meta["plan_sha256"]) == 64
    assert meta["trt_version"] == TRT and meta["gpu_name"] == GPU and meta["build_seconds"] == 1.5
    assert meta["config"]["profiling_verbosity"] == "detailed"
    assert sorted(p.name for p in cache.directory.iterdir()) == sorted([plan_path.name, meta_path.name])  # no temp files


def test_plain_miss_is_silent(tmp_path):
    cache = EngineCache(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get("ab" * 32) is None


def corrupt_meta(meta_path, plan_path):
    meta_path.write_text("{not json")


def truncate_plan(meta_path, plan_path):
    plan_path.write_bytes(plan_path.read_bytes()[:10])


def flip_a_byte(meta_path, plan_path):
    data = bytearray(plan_path.read_bytes())
    data[5] ^= 0xFF
    plan_path.write_bytes(bytes(data))


def delete_meta(meta_path, plan_path):
    meta_path.unlink()


def delete_plan(meta_path, plan_path):
    plan_path.unlink()


def meta_not_object(meta_path, plan_path):
    meta_path.write_text("[1, 2]")


@pytest.mark.parametrize("damage", [corrupt_meta, truncate_plan, flip_a_byte, delete_meta, delete_plan, meta_not_object])
def test_broken_entries_are_removed_with_a_warning(tmp_path, damage):
    cache, key, plan_path, meta_path = entry(tmp_path)
    damage(meta_path, plan_path)
    with pytest.warns(EngineCacheWarning, match="rebuilt"):
        assert cache.get(key) is None
    assert not plan_path.exists() and not meta_path.exists()


@pytest.mark.parametrize("kwargs, field", [(dict(trt_version="10.16.0.1"), "trt_version"),
                                           (dict(gpu_name="NVIDIA A100"), "gpu_name")])
def test_entries_from_another_machine_are_rejected(tmp_path, kwargs, field):
    cache, key, plan_path, meta_path = entry(tmp_path)
    with pytest.warns(EngineCacheWarning, match=field):
        assert cache.get(key, **kwargs) is None
    assert not plan_path.exists()


def test_meta_key_mismatch_is_rejected(tmp_path):
    cache, key, plan_path, meta_path = entry(tmp_path)
    meta = json.loads(meta_path.read_text())
    meta["key"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(EngineCacheWarning, match="key"):
        assert cache.get(key) is None


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
