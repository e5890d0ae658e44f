"""Buffer sizes from shapes and TensorRT data-type names, and shape checks against profiles.

Introduced in lab 01 (batching). Pure Python: TensorRT's ``DataType`` members are handled by name
(``engine.get_tensor_dtype(name).name``), so this module is tested without TensorRT. INT4 and FP4
are packed two to a byte, so a buffer's size is rounded up to whole bytes.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

#: Bits per element of each trt.DataType member (TensorRT 11.4).
DTYPE_BITS: dict[str, int] = {
    "FLOAT": 32, "HALF": 16, "BF16": 16, "INT8": 8, "INT32": 32, "INT64": 64, "BOOL": 8,
    "UINT8": 8, "FP8": 8, "INT4": 4, "FP4": 4, "E8M0": 8,
}

# numpy has no bfloat16, 8-bit or 4-bit floats, nor int4.
_NUMPY = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
          "BOOL": "bool", "UINT8": "uint8"}
# TensorRT's FP8 is E4M3 (1 sign, 4 exponent, 3 mantissa bits, bias 7); FP4 is E2M1, packed in pairs.
_TORCH = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
          "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8_e4m3fn",
          "FP4": "float4_e2m1fn_x2", "E8M0": "float8_e8m0fnu"}


class ShapeError(ValueError):
    """A requested shape does not fit the engine or the active optimization profile."""


def _known(dtype_name: str) -> str:
    name = str(dtype_name).upper()
    if name.startswith("DATATYPE."):  # str(trt.DataType.HALF) == "DataType.HALF"
        name = name.split(".", 1)[1]
    if name not in DTYPE_BITS:
        raise KeyError(f"unknown TensorRT data type {dtype_name!r}; known: {sorted(DTYPE_BITS)}")
    return name


def bits_per_element(dtype_name: str) -> int:
    return DTYPE_BITS[_known(dtype_name)]


def bytes_per_element(dtype_name: str) -> float:
    """Bytes per element: 0.5 for the packed 4-bit types."""
    return bits_per_element(dtype_name) / 8


def is_packed(dtype_name: str) -> bool:
    """True for types stored several to a byte (INT4, FP4)."""
    return bits_per_element(dtype_name) < 8


def numpy_dtype(dtype_name: str) -> Any:
    """The numpy dtype, or None where numpy has none (BF16, FP8, INT4, FP4, E8M0)."""
    import numpy as np

    name = _NUMPY.get(_known(dtype_name))
    return None if name is None else np.dtype(name)


def torch_dtype(dtype_name: str) -> Any:
    """The torch dtype, or None where this PyTorch has none (INT4 always; FP4 in old versions).

    FP4's torch dtype packs two values per element, so a tensor of it has half the elements.
    """
    import torch

    name = _TORCH.get(_known(dtype_name))
    return None if name is None else getattr(torch, name, None)


def volume(shape: Iterable[int]) -> int:
    """Number of elements; 1 for a scalar (shape ``()``)."""
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise ShapeError(f"shape {dims} has a dynamic (-1) dimension: resolve it first (resolve_shape)")
    return math.prod(dims)


def nbytes(shape: Iterable[int], dtype_name: str) -> int:
    """Bytes a dense tensor of `shape` and `dtype_name` takes, rounded up to whole bytes."""
    return (volume(shape) * bits_per_element(dtype_name) + 7) // 8


def resolve_shape(engine_shape: Sequence[int], requested: Sequence[int] | None = None,
                  *, name: str = "tensor") -> tuple[int, ...]:
    """The concrete shape for a tensor whose engine shape may hold -1 (dynamic) dimensions.

    `requested` must have the engine's rank, match every static dimension, and give every
    dynamic one; with no request the engine shape must be fully static.
    """
    engine = tuple(int(d) for d in engine_shape)
    dynamic_axes = [i for i, d in enumerate(engine) if d < 0]
    if requested is None:
        if dynamic_axes:
            raise ShapeError(f"{name!r} has dynamic axes {dynamic_axes} (engine shape {engine}): "
                             "give its shape, e.g. runner.set_input_shapes({" + repr(name) + ": (...)})")
        return engine
    shape = tuple(int(d) for d in requested)
    if len(shape) != len(engine):
        raise ShapeError(f"{name!r}: shape {shape} has rank {len(shape)}, the engine expects rank "
                         f"{len(engine)} (engine shape {engine}, -1 = dynamic)")
    for axis, (want, got) in enumerate(zip(engine, shape)):
        if got < 0:
            raise ShapeError(f"{name!r}: axis {axis} of {shape} is unspecified ({got}); give a size")
        if want >= 0 and got != want:
            raise ShapeError(f"{name!r}: axis {axis} is static ({want}) in the engine, got {got} "
                             f"(engine shape {engine}, requested {shape})")
    return shape


def check_in_profile(shape: Sequence[int], min_shape: Sequence[int], max_shape: Sequence[int],
                     *, name: str = "tensor", profile_index: int | None = None) -> None:
    """Raise :class:`ShapeError` unless min_shape <= shape <= max_shape on every axis."""
    shape, lo, hi = (tuple(int(d) for d in s) for s in (shape, min_shape, max_shape))
    where = "the profile" if profile_index is None else f"profile {profile_index}"
    if not len(shape) == len(lo) == len(hi):
        raise ShapeError(f"{name!r}: shape {shape} has rank {len(shape)}, {where} has rank {len(lo)} "
                         f"(min {lo}, max {hi})")
    bad = [axis for axis, (a, x, b) in enumerate(zip(lo, shape, hi)) if not a <= x <= b]
    if bad:
        raise ShapeError(f"{name!r}: shape {shape} is outside {where} on axes {bad}: the range is "
                         f"min {lo} .. max {hi}. Pick a shape in range, another profile, or rebuild "
                         "with a wider profile.")


def typed_view(storage: Any, shape: Sequence[int], dtype_name: str) -> Any:
    """The first bytes of a uint8 torch tensor `storage` as a tensor of `shape` and `dtype_name`.

    Where torch has no such type, or it is packed (INT4, FP4), the raw bytes are returned instead.
    """
    size = nbytes(shape, dtype_name)
    dtype = torch_dtype(dtype_name)
    if dtype is None or is_packed(dtype_name):
        return storage[:size]
    return storage[:size].view(dtype).view(tuple(shape))
