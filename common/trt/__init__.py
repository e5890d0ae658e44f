"""TensorRT helpers: build (config -> cached engine), run (contexts, buffers, streams, CUDA graphs),
inspect (engine inspector JSON -> table) and profile (IProfiler -> per-layer times).

Introduced in lab 00 (tour), which reports :func:`available` and :func:`version`. Importing this
package never imports ``tensorrt``, PyTorch or cuda-python: each function imports what it needs when
called, so the pure parts (configs, cache keys, buffer sizes, inspector parsing, profiler
aggregation, graph caches) work and are tested on machines without TensorRT or a GPU.
"""

from __future__ import annotations

from common import env

from .buffers import ShapeError, check_in_profile, nbytes, resolve_shape, volume
from .build import BuildResult, EngineBuildError, OnnxParseError, build_engine, load_engine
from .cache import EngineCache, EngineCacheWarning, cache_key
from .config import BuildConfig, Profile, batch_profile
from .graphs import CudaError, CudaGraph, GraphCache, GraphCaptureError
from .inspect import EngineInfo, IOTensorInfo, LayerInfo, TensorInfo, inspect_engine, parse_engine_information
from .logger import BuildLog, make_logger
from .profile import LayerTimes, attach_profiler
from .run import EngineRunner, TensorSpec
from .trtexec import trtexec_command


def available() -> bool:
    """True when TensorRT can run here: it imports, is new enough, and a GPU is visible."""
    return env.has("tensorrt")


def version() -> str | None:
    """The installed TensorRT's version, or None where it is not importable."""
    return env.detect().tensorrt


__all__ = [
    "available", "version",
    "BuildConfig", "Profile", "batch_profile",
    "EngineCache", "EngineCacheWarning", "cache_key",
    "ShapeError", "check_in_profile", "nbytes", "resolve_shape", "volume",
    "EngineInfo", "IOTensorInfo", "LayerInfo", "TensorInfo", "inspect_engine", "parse_engine_information",
    "LayerTimes", "attach_profiler",
    "BuildLog", "make_logger", "BuildResult", "EngineBuildError", "OnnxParseError", "build_engine", "load_engine",
    "EngineRunner", "TensorSpec",
    "trtexec_command",
    "CudaError", "CudaGraph", "GraphCache", "GraphCaptureError",
]
