"""What differs between TensorRT versions (10.8 and newer, 11.x), kept in one place.

Introduced in lab 01 (the first engine build). The course is written for TensorRT 11 and keeps one
code path wherever the versions share the API. Where they differ, code branches on a guard from
this module, and ``tests/test_trt_api.py`` checks the names inside each branch against the
vendored API listing of every version the branch admits (10.8, 10.9, 10.10, 10.16, 11.4):

- :func:`is_trt10`: 10.x against 11.x;
- :func:`at_least` (``at_least(trt, 10, 9)``): names that arrived in a 10.x minor release;
- :func:`has_aot_plugins`: ``tensorrt.plugin`` with ahead-of-time implementations (10.9 and newer).

Differences that matter to the course:
- 10.x builds a weakly typed network unless ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is set
  (then layer precisions come from the ONNX types, as always in 11.x, where the flag is gone);
- Python plugins gained ahead-of-time (AOT) implementations, and the network flags that choose
  between a plugin's JIT and AOT implementations, in 10.9: on 10.8 only JIT exists;
- on 10.8 to 10.11 the Python binding ``get_device_memory_size_for_profile_v2`` calls the C++
  getter of the deprecated non-v2 method (``release/10.x`` ``python/src/infer/pyCore.cpp``); 10.12
  binds the v2 getter.
"""

from __future__ import annotations

from types import ModuleType

from common.env import MIN_TENSORRT, _version_tuple

#: The first release whose ``tensorrt.plugin`` has ``aot_impl`` and whose network has the
#: PREFER_JIT/PREFER_AOT_PYTHON_PLUGINS creation flags (NvInfer.h of release/10.9).
AOT_PLUGINS_SINCE = (10, 9)
#: The first release that binds ``get_device_memory_size_for_profile_v2`` to the v2 getter.
PROFILE_MEMORY_V2_SINCE = (10, 12)


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


def python_plugin_flags(trt: ModuleType, choice: str | None) -> int:
    """``create_network`` flags that pick a ``tensorrt.plugin``'s "jit" or "aot" implementation.

    None asks for nothing. Before 10.9 a Python plugin has only a JIT implementation, so "jit" needs
    no flag there (and the flag does not exist) and "aot" is an error that says which version has it.
    """
    if choice is None:
        return 0
    if choice not in ("jit", "aot"):
        raise ValueError(f"python_plugins must be 'jit', 'aot' or None, got {choice!r}")
    if not at_least(trt, *AOT_PLUGINS_SINCE):
        if choice == "aot":
            raise RuntimeError(f"TensorRT {trt.__version__} has no ahead-of-time Python plugins: they "
                               f"arrived in {AOT_PLUGINS_SINCE[0]}.{AOT_PLUGINS_SINCE[1]}; use python_plugins='jit'")
        return 0   # JIT is the only implementation a 10.8 plugin can have
    flag = (trt.NetworkDefinitionCreationFlag.PREFER_JIT_PYTHON_PLUGINS if choice == "jit"
            else trt.NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS)
    return 1 << int(flag)


def has_aot_plugins(trtp: ModuleType) -> bool:
    """Whether this ``tensorrt.plugin`` can register ahead-of-time plugin implementations."""
    return hasattr(trtp, "aot_impl")


def profile_memory_note(trt: ModuleType) -> str | None:
    """What to say beside ``get_device_memory_size_for_profile_v2`` on this version, or None.

    On 10.8 to 10.11 the binding of that name calls the deprecated non-v2 getter, so the number is
    the non-v2 one (NvInferRuntime.h documents only the v2 getter as following a weight-streaming
    budget).
    """
    if is_trt10(trt) and not at_least(trt, *PROFILE_MEMORY_V2_SINCE):
        return (f"TensorRT {trt.__version__}: get_device_memory_size_for_profile_v2 calls the non-v2 "
                f"getter (fixed in {PROFILE_MEMORY_V2_SINCE[0]}.{PROFILE_MEMORY_V2_SINCE[1]}); the "
                "numbers are what the deprecated get_device_memory_size_for_profile reports")
    return None
