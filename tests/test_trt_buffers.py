"""Buffer sizing, dtype maps and shape checks, without TensorRT."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.trt import buffers
from common.trt.buffers import ShapeError, check_in_profile, nbytes, resolve_shape, typed_view, volume

API = json.loads((Path(__file__).parent / "data" / "tensorrt-11.4-python-api.json").read_text())


def test_every_tensorrt_datatype_has_a_size():
    assert set(buffers.DTYPE_BITS) == set(API["classes"]["DataType"]["enum_values"])


@pytest.mark.parametrize("name, bytes_", [("FLOAT", 4), ("HALF", 2), ("BF16", 2), ("INT8", 1), ("INT32", 4),
                                          ("INT64", 8), ("BOOL", 1), ("UINT8", 1), ("FP8", 1), ("INT4", 0.5),
                                          ("FP4", 0.5)])
def test_bytes_per_element(name, bytes_):
    assert buffers.bytes_per_element(name) == bytes_


def test_nbytes_rounds_packed_types_up():
    assert nbytes((2, 3), "FLOAT") == 24
    assert nbytes((3,), "INT4") == 2
    assert nbytes((5,), "FP4") == 3
    assert nbytes((4,), "FP4") == 2
    assert nbytes((), "HALF") == 2       # a scalar is one element
    assert nbytes((0, 7), "FLOAT") == 0


def test_dtype_names_accept_enum_str_forms():
    assert buffers.bits_per_element("DataType.HALF") == 16
    assert buffers.bits_per_element("half") == 16
    with pytest.raises(KeyError, match="unknown TensorRT data type"):
        buffers.bits_per_element("FLOAT64")


def test_volume():
    assert volume((2, 3, 4)) == 24
    assert volume(()) == 1
    with pytest.raises(ShapeError, match="dynamic"):
        volume((-1, 3))


def test_numpy_and_torch_dtypes():
    assert buffers.numpy_dtype("HALF") == np.float16
    assert buffers.numpy_dtype("BOOL") == np.bool_
    assert buffers.numpy_dtype("BF16") is None and buffers.numpy_dtype("FP8") is None
    assert buffers.torch_dtype("BF16") is torch.bfloat16
    assert buffers.torch_dtype("FP8") is torch.float8_e4m3fn
    assert buffers.torch_dtype("INT4") is None
    assert buffers.is_packed("INT4") and not buffers.is_packed("INT8")


@pytest.mark.parametrize("name", [n for n in buffers.DTYPE_BITS if not buffers.is_packed(n)])
def test_element_sizes_agree_with_torch_and_numpy(name):
    t = buffers.torch_dtype(name)
    if t is not None:
        assert torch.empty((), dtype=t).element_size() * 8 == buffers.bits_per_element(name)
    n = buffers.numpy_dtype(name)
    if n is not None:
        assert n.itemsize * 8 == buffers.bits_per_element(name)


def test_resolve_shape():
    assert resolve_shape((-1, 3, 224, 224), (8, 3, 224, 224)) == (8, 3, 224, 224)
    assert resolve_shape((1, 10)) == (1, 10)
    with pytest.raises(ShapeError, match=r"'x' has dynamic axes \[0, 2\]"):
        resolve_shape((-1, 3, -1), name="x")
    with pytest.raises(ShapeError, match=r"axis 1 is static \(3\) in the engine, got 4"):
        resolve_shape((-1, 3), (2, 4), name="x")
    with pytest.raises(ShapeError, match="rank 3, the engine expects rank 2"):
        resolve_shape((-1, 3), (2, 3, 1))
    with pytest.raises(ShapeError, match="axis 0 .* is unspecified"):
        resolve_shape((-1, 3), (-1, 3))


def test_check_in_profile():
    check_in_profile((8, 3), (1, 3), (32, 3), name="images")
    with pytest.raises(ShapeError) as info:
        check_in_profile((64, 3), (1, 3), (32, 3), name="images", profile_index=1)
    text = str(info.value)
    assert "'images'" in text and "profile 1" in text and "(1, 3)" in text and "(32, 3)" in text and "axes [0]" in text
    with pytest.raises(ShapeError, match="rank"):
        check_in_profile((8,), (1, 3), (32, 3))


def test_typed_views_of_raw_storage():
    storage = torch.zeros(64, dtype=torch.uint8)
    v = typed_view(storage, (2, 3), "FLOAT")
    assert v.dtype == torch.float32 and v.shape == (2, 3) and v.data_ptr() == storage.data_ptr()
    v.fill_(1.0)
    assert storage[:24].any() and not storage[24:].any()
    assert typed_view(storage, (5,), "INT4").shape == (3,)  # packed: raw bytes, rounded up
    assert typed_view(storage, (4,), "BF16").dtype == torch.bfloat16
