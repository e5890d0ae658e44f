"""Lab 03 (CUDA graphs): what one kernel launch costs the host, framework by framework.

Eager minus graph, per operation, is PyTorch's cost per operator (Python, module calls, the
dispatcher, then the launch), not CUDA's cost per launch. This module times the host side of
launching the same number of kernels as one forward, several ways:

- PyTorch eager's forward (:data:`EAGER_FORWARD`), one operator after another from ``nn.Module`` code;
- one PyTorch operator in a loop (:data:`TORCH_OP`, ``torch.relu_``): the dispatcher without modules;
- a trivial Triton kernel (:data:`TRITON`): Triton's Python launcher, then ``cuLaunchKernel``;
- an empty kernel through cuda-python's ``cuLaunchKernel`` (:data:`DRIVER`): the nearest Python gets
  to CUDA's own launch, a driver call per kernel;
- the forward's CUDA graph (:data:`GRAPH`): one ``cudaGraphLaunch`` for all of them.

Each configuration enqueues `count` kernels per call on a created stream; :func:`launch_cost_rows`
divides the harness's host time per call (and event and kernel time) by the kernels it launched.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from common import bench, env

EAGER_FORWARD = "PyTorch eager forward (nn.Module, per operator)"
TORCH_OP = "PyTorch operator in a loop (torch.relu_)"
TRITON = "Triton kernel launch (trivial kernel)"
DRIVER = "cuLaunchKernel via cuda-python (empty kernel)"
GRAPH = "CUDA graph replay of the forward (per kernel)"

#: An empty kernel in PTX, JIT-compiled by the driver (no NVRTC needed): `.target` is filled in per
#: device, the oldest that :func:`ptx_target` allows, so one text serves every GPU newer than it.
EMPTY_KERNEL = "trtlabs_empty"
_EMPTY_PTX = """.version {version}
.target {target}
.address_size 64
.visible .entry {name}()
{{
    ret;
}}
"""


def ptx_target(major: int, minor: int) -> tuple[str, str]:
    """(PTX ISA version, target) for an empty kernel that the driver JIT-compiles on compute
    capability `major`.`minor`: sm_80 (ISA 7.0) on Ampere and newer, older targets below."""
    for (cc_major, cc_minor), version, target in (((8, 0), "7.0", "sm_80"), ((7, 5), "6.3", "sm_75"),
                                                  ((7, 0), "6.0", "sm_70")):
        if (major, minor) >= (cc_major, cc_minor):
            return version, target
    raise ValueError(f"compute capability {major}.{minor} is older than this lab supports (7.0)")


def empty_kernel_ptx(major: int, minor: int) -> bytes:
    """The PTX text of :data:`EMPTY_KERNEL` for a device, NUL-terminated as cuModuleLoadData wants it."""
    version, target = ptx_target(major, minor)
    return _EMPTY_PTX.format(version=version, target=target, name=EMPTY_KERNEL).encode() + b"\0"


def loop(launch: Callable[[], Any], count: int) -> Callable[[], None]:
    """A callable that runs `launch` `count` times: one timed call launches `count` kernels."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")

    def run() -> None:
        for _ in range(count):
            launch()

    return run


def _check(result: Any, what: str) -> Any:
    """Unpack a cuda-bindings ``(CUresult, *values)`` tuple, raising on an error code."""
    err, values = result[0], result[1:]
    if int(err) != 0:
        raise RuntimeError(f"{what} failed: {getattr(err, 'name', err)}")
    return values[0] if len(values) == 1 else (values or None)


def driver_launcher(stream: "torch.cuda.Stream") -> Callable[[], None]:
    """A callable that launches the empty kernel once on `stream` with ``cuLaunchKernel`` (one block
    of one thread, no parameters). Loads the PTX module in the current (PyTorch's primary) context."""
    from cuda.bindings import driver as cu  # type: ignore[import-untyped,import-not-found,unused-ignore]

    _check(cu.cuInit(0), "cuInit")
    if int(_check(cu.cuCtxGetCurrent(), "cuCtxGetCurrent")) == 0:   # no context current on this thread yet
        device = _check(cu.cuDeviceGet(torch.cuda.current_device()), "cuDeviceGet")
        _check(cu.cuCtxSetCurrent(_check(cu.cuDevicePrimaryCtxRetain(device), "cuDevicePrimaryCtxRetain")),
               "cuCtxSetCurrent")
    image = np.frombuffer(empty_kernel_ptx(*torch.cuda.get_device_capability()), dtype=np.uint8)
    module = _check(cu.cuModuleLoadData(image.ctypes.data), "cuModuleLoadData")   # the driver JIT-compiles it now
    function = _check(cu.cuModuleGetFunction(module, EMPTY_KERNEL.encode()), "cuModuleGetFunction")
    handle = stream.cuda_stream
    launch_kernel = cu.cuLaunchKernel

    def launch() -> None:
        err = launch_kernel(function, 1, 1, 1, 1, 1, 1, 0, handle, 0, 0)[0]
        if int(err) != 0:
            raise RuntimeError(f"cuLaunchKernel failed: {getattr(err, 'name', err)}")

    return launch


#: ``triton.language``, bound by :func:`triton_launcher` on first use (GPU machines only).
tl: Any = None


def _store_one(x_ptr):
    tl.store(x_ptr, 1.0)


@functools.cache
def _triton_kernel() -> Any:
    global tl
    import triton
    import triton.language

    tl = triton.language
    return triton.jit(_store_one)


def triton_launcher(target: torch.Tensor) -> Callable[[], None]:
    """A callable that launches a one-program Triton kernel storing 1.0 into ``target[0]``, on the
    current stream (run it inside ``torch.cuda.stream(...)``). The first call compiles it."""
    kernel = _triton_kernel()
    return functools.partial(kernel[(1,)], target)


def check_triton_launch(stream: "torch.cuda.Stream") -> torch.Tensor:
    """Compile the Triton kernel, launch it once on `stream` and check it wrote its value: a launch
    that did nothing would make its cost meaningless. Returns the buffer it writes."""
    target = torch.zeros(1, device="cuda", dtype=torch.float32)
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        triton_launcher(target)()
    stream.synchronize()
    if float(target.item()) != 1.0:
        raise RuntimeError("the Triton kernel ran but did not write its value: its launches cannot be timed")
    return target


def available_methods(*, has_gpu: bool) -> dict[str, str]:
    """Each bare-launch method, and why it cannot run here ('' where it can)."""
    if not has_gpu:
        return {TRITON: "needs an NVIDIA GPU: nothing is launched on a CPU",
                DRIVER: "needs an NVIDIA GPU: nothing is launched on a CPU"}
    return {TRITON: "" if env.has_triton() else "needs Triton (it ships with PyTorch's CUDA wheels)",
            DRIVER: "" if env.has("cuda-bindings") else "needs cuda-python (pip install cuda-bindings)"}


def launch_configs(forward: Callable[[], Any], forward_stream: "torch.cuda.Stream", graph_replay: Callable[[], Any],
                   graph_stream: "torch.cuda.Stream", small: torch.Tensor, count: int, *,
                   methods: dict[str, str]) -> dict[str, dict]:
    """``bench.measure`` keyword arguments for each way of launching `count` kernels per call: the
    eager forward itself (which launches `count`), `count` PyTorch operators on `small`, `count` Triton
    and driver launches where `methods` says they can run, and one graph replay (which also runs
    `count` kernels, launched by one call). Each on a created stream of its own."""
    configs = {EAGER_FORWARD: {"fn": forward, "stream": forward_stream},
               TORCH_OP: {"fn": loop(functools.partial(torch.relu_, small), count), "stream": torch.cuda.Stream()}}
    if not methods.get(TRITON):
        stream = torch.cuda.Stream()
        configs[TRITON] = {"fn": loop(triton_launcher(check_triton_launch(stream)), count), "stream": stream}
    if not methods.get(DRIVER):
        stream = torch.cuda.Stream()
        configs[DRIVER] = {"fn": loop(driver_launcher(stream), count), "stream": stream}
    configs[GRAPH] = {"fn": graph_replay, "stream": graph_stream}
    return {label: {**config, "name": label, "backend": label, "extra": {"kernels": count}}
            for label, config in configs.items()}


def kernels_per_call(runs: Sequence[bench.Measurement]) -> int:
    """How many kernels one timed call of a launch-cost configuration launched (:func:`launch_configs`)."""
    return int(runs[0].extra["kernels"])


def launch_cost_rows(runs: Mapping[str, Sequence[bench.Measurement]]) -> list[dict]:
    """Per method: host, event and kernel time per kernel launched (microseconds), with the regime of
    the call (a loop of launches whose GPU waits is host-bound) and the host time's range over passes."""
    rows = []
    for label, ms in runs.items():
        count = kernels_per_call(ms)
        host = [m.host_ms.median for m in ms]
        fields = bench.kernel_fields(ms)
        rows.append({"method": label, "kernels_per_call": count,
                     "host_us_per_kernel": bench.median_host_ms(ms) * 1e3 / count,
                     "host_range_us": f"{min(host) * 1e3 / count:.2f}-{max(host) * 1e3 / count:.2f}",
                     "event_us_per_kernel": bench.median_latency_ms(ms) * 1e3 / count,
                     "kernel_us_per_kernel": fields["kernel_ms"] * 1e3 / count,
                     "gpu_busy": fields["gpu_busy"], "regime": fields["regime"]})
    return rows
