"""What differs between TensorRT 10.x (10.8 and newer) and 11.x, kept in one place.

Introduced in lab 01 (the first engine build). The course is written for TensorRT 11 and keeps one
code path wherever both versions share the API. Where they differ, code branches on
:func:`is_trt10`: ``tests/test_trt_api.py`` checks the names inside an ``if compat.is_trt10(trt):``
branch against TensorRT 10.16, the ``else`` branch against 11.4, and every other TensorRT name
against both.

Differences that matter to the course:
- 10.x builds a weakly typed network unless ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is set
  (then layer precisions come from the ONNX types, as always in 11.x, where the flag is deprecated
  and ignored);
- Python plugins gained ahead-of-time (AOT) implementations in 10.x minor releases: where
  ``tensorrt.plugin`` has no ``aot_impl``, only the JIT implementation is registered.
"""

from __future__ import annotations

from types import ModuleType

from common.env import MIN_TENSORRT, _version_tuple


def version_tuple(trt: ModuleType) -> tuple[int, ...]:
    return _version_tuple(trt.__version__)


def require_supported(trt: ModuleType) -> None:
    """Stop with what to do when the installed TensorRT is older than the course supports."""
    if version_tuple(trt)[:2] < MIN_TENSORRT:
        raise RuntimeError(f"TensorRT {trt.__version__} is too old: the course needs "
                           f"{MIN_TENSORRT[0]}.{MIN_TENSORRT[1]} or newer (see README, 'With TensorRT').")


def is_trt10(trt: ModuleType) -> bool:
    """True on TensorRT 10.x, whose API differs from 11.x where this module says."""
    return version_tuple(trt)[0] == 10


def at_least(trt: ModuleType, major: int, minor: int = 0) -> bool:
    """True when the installed TensorRT is `major`.`minor` or newer: the guard for names that arrived
    in a 10.x minor release (``tests/test_trt_api.py`` checks the names inside it against every
    version it admits)."""
    return version_tuple(trt)[:2] >= (major, minor)


def network_flags(trt: ModuleType) -> int:
    """``create_network`` flags for a strongly typed network on the installed version."""
    require_supported(trt)
    if is_trt10(trt):
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0   # 11.x: every network is strongly typed


def has_aot_plugins(trtp: ModuleType) -> bool:
    """Whether this ``tensorrt.plugin`` can register ahead-of-time plugin implementations."""
    return hasattr(trtp, "aot_impl")
