"""Lab 04 (shape changes): TensorRT's shape changes, profile switches and one context per profile.

Run only where TensorRT is installed. :func:`trt_targets` makes switching targets over one
:class:`common.trt.EngineRunner` (a shape change in one context, a profile switch in one context, or
one context per profile); :func:`trt_switch_studies` studies the three ways, :func:`trt_memory_rows`
says what each holds in device memory, :func:`profile_width_study` sets narrow profiles against one
wide one, :func:`allocation_strategy_study` creates a context with each
``ExecutionContextAllocationStrategy`` and says what memory each holds. :func:`build_engines` builds
the lab's engines, :func:`verify_engines` checks each before any of it is timed, and
:func:`trtexec_commands` prints them as trtexec builds them.
"""

from __future__ import annotations

import contextlib
import functools
import math
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import torch

from common import bench, checks, models
from common.trt.buffers import ShapeError

from .switching import SwitchStudy, Target, alternating, reference_outputs, switch_study, tolerance

#: A binding: (profile index, {input name: shape}).
Binding = tuple[int, Mapping[str, Sequence[int]]]
HOW = ("shape", "profile", "contexts")


def profile_index_for(profile_shapes: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]],
                      shape: Sequence[int]) -> int:
    """The first profile whose min..max range holds `shape` (one input's (min, opt, max) per profile)."""
    for index, (lo, _, hi) in enumerate(profile_shapes):
        if len(lo) == len(shape) and all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return index
    ranges = ", ".join(f"{i}: {tuple(lo)}..{tuple(hi)}" for i, (lo, _, hi) in enumerate(profile_shapes))
    raise ShapeError(f"no profile holds shape {tuple(shape)} (profiles {ranges}): rebuild with a profile "
                     "that covers it")


def _fill_inputs(runner: Any, ctx_index: int) -> None:
    """Random normal values in the context's input buffers: finite data, as a real request carries."""
    stream = runner.stream(ctx_index)
    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
        for tensor in runner.inputs(ctx_index).values():
            tensor.normal_() if tensor.is_floating_point() else tensor.zero_()


def _bind(runner: Any, ctx_index: int, binding: Binding) -> None:
    """Put a context on a binding's profile (only if it is on another one) and shapes."""
    profile, shapes = binding
    if runner.context(ctx_index).active_optimization_profile != profile:
        runner.set_optimization_profile(ctx_index, profile)
    runner.set_input_shapes(shapes, ctx_index)


def trt_targets(runner: Any, bindings: Mapping[Hashable, Binding], how: str) -> dict[Hashable, Target]:
    """Targets over one EngineRunner, switched `how`:

    - ``"shape"``: one context, one profile; a switch is ``set_input_shape`` (every binding must
      name the same profile);
    - ``"profile"``: one context; a switch is ``set_optimization_profile_async`` then
      ``set_input_shape``;
    - ``"contexts"``: binding i lives in context i, bound once here; a switch only picks the context.

    Every binding is run once here (buffers allocated, inputs filled, first enqueue done), so the
    study times repeated switches between states already seen, as a server would make them.
    """
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}, got {how!r}")
    targets: dict[Hashable, Target] = {}
    context_of: dict[Hashable, int] = {}
    if how == "contexts":
        if runner.num_contexts < len(bindings):
            raise ValueError(f"{len(bindings)} bindings need {len(bindings)} contexts, the runner has "
                             f"{runner.num_contexts}: EngineRunner(engine, num_contexts={len(bindings)})")
        for ctx_index, (key, binding) in enumerate(bindings.items()):
            _bind(runner, ctx_index, binding)
            context_of[key] = ctx_index
            targets[key] = Target(run=functools.partial(runner.enqueue, ctx_index), stream=runner.stream(ctx_index))
    else:
        profiles = {profile for profile, _ in bindings.values()}
        if how == "shape":
            if len(profiles) != 1:
                raise ValueError(f"a shape change stays in one profile; these bindings use profiles {sorted(profiles)}")
            profile = profiles.pop()
            if runner.context(0).active_optimization_profile != profile:
                runner.set_optimization_profile(0, profile)
        for key, (profile, shapes) in bindings.items():
            switch = (functools.partial(runner.set_input_shapes, shapes, 0) if how == "shape"
                      else functools.partial(_bind, runner, 0, (profile, shapes)))
            context_of[key] = 0
            targets[key] = Target(run=functools.partial(runner.enqueue, 0), switch=switch, stream=runner.stream(0))
    for key, target in targets.items():
        target.switch()
        _fill_inputs(runner, context_of[key])
        target.run()
        runner.synchronize(context_of[key])
    return targets


def trt_memory_rows(runner: Any, input_name: str) -> list[dict]:
    """Device memory a runner holds: activation memory per profile and per context, I/O buffers.

    Contexts are created with TensorRT's default STATIC strategy, so each one allocates the
    engine's ``device_memory_size_v2`` (the largest profile's need) whichever profile it serves.
    The per-profile rows carry the note :func:`common.trt.compat.profile_memory_note` gives for this
    TensorRT ("" where it has none: on 10.8 to 10.11 the binding calls the non-v2 getter).
    """
    note = runner.device_memory_note() or ""
    rows = [{"what": f"activation memory profile {p} needs (get_device_memory_size_for_profile_v2)",
             "bytes": runner.device_memory_bytes_for_profile(p), "note": note}
            for p in range(len(runner.specs[input_name].profile_shapes))]
    per_context = runner.device_memory_bytes
    rows.append({"what": "activation memory each context allocates (device_memory_size_v2)", "bytes": per_context,
                 "note": ""})
    io_bytes = [runner.io_buffer_bytes(i) for i in range(runner.num_contexts)]
    rows += [{"what": f"context {i} I/O buffers", "bytes": b, "note": ""} for i, b in enumerate(io_bytes)]
    rows.append({"what": f"total for {runner.num_contexts} context(s)",
                 "bytes": runner.num_contexts * per_context + sum(io_bytes), "note": ""})
    return rows


def profile_width_study(narrow: Any, wide: Any, input_name: str, sample_shape: Sequence[int],
                        batches: Sequence[int], *, passes: int = bench.PASSES, warmup_ms: float = 10.0,
                        measure_ms: float = 40.0) -> list[dict]:
    """Steady state at each batch: an engine with narrow profiles (the one holding the batch is
    used) against an engine with one wide profile, measured `passes` times, alternately. A profile's
    tactics are chosen for its `opt` shape, a device effect: the speedup is judged on kernel time
    where it was measured (``compared_on``), with its 95% interval over passes."""
    rows = []
    narrow_ranges = narrow.specs[input_name].profile_shapes
    for batch in batches:
        shape = (batch, *sample_shape)
        profile = profile_index_for(narrow_ranges, shape)
        _bind(narrow, 0, (profile, {input_name: shape}))
        _bind(wide, 0, (0, {input_name: shape}))
        runs: dict[str, list[bench.Measurement]] = {"wide": [], "narrow": []}
        for _ in range(passes):
            for label, runner in (("wide", wide), ("narrow", narrow)):
                _fill_inputs(runner, 0)
                stream = runner.stream(0)
                runs[label].append(bench.measure(functools.partial(runner.enqueue, 0), name=f"{label} profile",
                                                 backend="TensorRT", batch_size=batch,
                                                 device="cpu" if stream is None else "cuda", stream=stream,
                                                 warmup_ms=warmup_ms, measure_ms=measure_ms))
        on = "event" if any(math.isnan(m.kernel_ms) for ms in runs.values() for m in ms) else "kernel"
        cmp = bench.compare(runs["wide"], runs["narrow"], on=on)
        lo, opt, hi = narrow_ranges[profile]
        interval = cmp.interval
        rows.append({"batch": batch, "narrow_profile": f"{profile}: {lo[0]}..{hi[0]} opt {opt[0]}",
                     "wide_ms": bench.median_latency_ms(runs["wide"]), "narrow_ms": bench.median_latency_ms(runs["narrow"]),
                     "wide_kernel_ms": bench.median_kernel_ms(runs["wide"]),
                     "narrow_kernel_ms": bench.median_kernel_ms(runs["narrow"]),
                     "narrow_busy": bench.kernel_fields(runs["narrow"])["gpu_busy"],
                     "speedup": cmp.speedup, "interval_lo": interval[0], "interval_hi": interval[1],
                     "compared_on": on, "significant": cmp.significant, "verdict": cmp.verdict()})
    return rows


# -- allocation strategies: TensorRT's answer to "a context per profile costs memory" ------------

#: The ExecutionContextAllocationStrategy members the allocation study creates a context with, in order.
STRATEGIES = ("STATIC", "ON_PROFILE_CHANGE", "USER_MANAGED")


def strategy_member(trt: Any, name: str) -> Any:
    """``trt.ExecutionContextAllocationStrategy.<name>`` for one of :data:`STRATEGIES`."""
    members = {"STATIC": trt.ExecutionContextAllocationStrategy.STATIC,
               "ON_PROFILE_CHANGE": trt.ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE,
               "USER_MANAGED": trt.ExecutionContextAllocationStrategy.USER_MANAGED}
    if name not in members:
        raise ValueError(f"allocation strategy must be one of {STRATEGIES}, got {name!r}")
    return members[name]


def _free_device_bytes() -> int:
    torch.cuda.synchronize()
    return int(torch.cuda.mem_get_info()[0])


def _engine_dims(dims: Any) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def allocation_strategy_study(engine: Any, input_name: str, inputs: Mapping[int, torch.Tensor],
                              reference: Mapping[int, torch.Tensor], *, strategies: Sequence[str] = STRATEGIES,
                              free_bytes: Any = _free_device_bytes) -> list[dict]:
    """One context per allocation strategy, each serving the batches of `inputs` in order (profile by
    profile): what TensorRT says it needs, the device memory taken by the context when it was created
    and since then (``cudaMemGetInfo``, 2 MiB granularity), and the output checked against `reference`.

    - ``STATIC`` (the default): the context allocates ``device_memory_size_v2``, the largest profile's
      need, when it is created;
    - ``ON_PROFILE_CHANGE``: it allocates ``get_device_memory_size_for_profile_v2(p)`` when profile p is
      selected, so a context on a small profile holds a small profile's memory;
    - ``USER_MANAGED``: it allocates none; the caller gives it memory with ``set_device_memory(ptr,
      size)``, here a PyTorch buffer sized by the engine for the profile (the figure
      ``update_device_memory_size_for_shapes`` returns for the current shapes is recorded beside it), so
      several contexts that never run at once can share one buffer.

    Every input and output buffer exists before the first figure is taken, so that the figures count
    the contexts' memory alone. Buffers live where `inputs` do (CUDA; the tests use the CPU with a
    stand-in engine, `free_bytes` giving the figures). Raises :class:`common.checks.VerificationError`
    for a context whose output is off: its memory would mean nothing.
    """
    import tensorrt as trt

    from common.trt import compat
    from common.trt.buffers import torch_dtype

    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    output_name = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    ranges = [tuple(_engine_dims(d) for d in engine.get_tensor_profile_shape(input_name, p))
              for p in range(engine.num_optimization_profiles)]
    device = next(iter(inputs.values())).device
    outputs = {b: torch.empty(tuple(reference[b].shape), device=device,
                              dtype=torch_dtype(engine.get_tensor_dtype(output_name).name)) for b in inputs}
    note = compat.profile_memory_note(trt) or ""
    stream = torch.cuda.Stream() if device.type == "cuda" else None
    handle = stream.cuda_stream if stream is not None else 0
    rows = []
    for name in strategies:
        before = free_bytes()
        context = engine.create_execution_context(strategy_member(trt, name))
        if context is None:
            raise RuntimeError(f"TensorRT could not create a context with strategy {name} (out of device memory?)")
        created = before - free_bytes()
        caller_memory = None
        for batch, x in inputs.items():
            profile = profile_index_for(ranges, tuple(x.shape))
            if context.active_optimization_profile != profile:
                context.set_optimization_profile_async(profile, handle)
            if not context.set_input_shape(input_name, tuple(x.shape)):
                raise ShapeError(f"TensorRT rejected shape {tuple(x.shape)} for {input_name!r}")
            engine_says = (int(engine.device_memory_size_v2) if name == "STATIC"
                           else int(engine.get_device_memory_size_for_profile_v2(profile)))
            for_shapes = int(context.update_device_memory_size_for_shapes()) if name == "USER_MANAGED" else None
            if name == "USER_MANAGED":
                if caller_memory is None or caller_memory.numel() < engine_says:
                    caller_memory = None   # the old buffer goes back first: at most one is held
                    caller_memory = torch.empty(max(engine_says, 1), dtype=torch.uint8, device=device)
                context.set_device_memory(caller_memory.data_ptr(), caller_memory.numel())
            context.set_tensor_address(input_name, x.data_ptr())
            context.set_tensor_address(output_name, outputs[batch].data_ptr())
            if stream is not None:
                stream.wait_stream(torch.cuda.current_stream())   # the inputs may still be being written
            if not context.execute_async_v3(handle):
                raise RuntimeError(f"execute_async_v3 failed for strategy {name} at batch {batch}")
            if stream is not None:
                stream.synchronize()
            error = checks.verify(outputs[batch].float().cpu(), reference[batch],
                                  f"context with strategy {name} at batch {batch}", tol=tolerance("fp16"))
            rows.append({"strategy": name, "batch": batch, "profile": profile, "engine_says_bytes": engine_says,
                         "for_shapes_bytes": for_shapes,
                         "caller_bytes": caller_memory.numel() if caller_memory is not None else 0,
                         "created_bytes": created, "taken_bytes": before - free_bytes(), "relative_error": error,
                         "note": note if name != "STATIC" else ""})
        del context, caller_memory
        if device.type == "cuda":
            torch.cuda.empty_cache()   # the caller's buffer goes back to the device before the next figure
    return rows


def allocation_rows_for_table(rows: Sequence[dict]) -> list[dict]:
    """The study's rows in MiB, for a table (who allocates: TensorRT, or the caller)."""
    def mib(value: int | None) -> float:
        return float("nan") if value is None else value / 2**20

    return [{"strategy": r["strategy"], "batch": r["batch"], "profile": r["profile"],
             "allocated_by": "caller" if r["strategy"] == "USER_MANAGED" else "TensorRT",
             "engine_says_MiB": mib(r["engine_says_bytes"]), "for_shapes_MiB": mib(r["for_shapes_bytes"]),
             "at_creation_MiB": mib(r["created_bytes"]), "taken_MiB": mib(r["taken_bytes"]),
             "relative_error": r["relative_error"]} for r in rows]


def trtexec_commands(onnx_name: str, sample_shape: Sequence[int], *, narrow: Sequence[tuple[int, int, int]],
                     wide: tuple[int, int, int], tactic_sources: Mapping[str, frozenset[str]], batch: int,
                     input_name: str = "input") -> list[str]:
    """The trtexec commands that build each of :func:`build_engines`'s engines from `onnx_name` and run it
    at `batch` (trtexec's default allocation, ``static``), then the first engine with the other two
    allocation strategies trtexec offers (``profile``, ``runtime``:
    :data:`common.trt.trtexec.ALLOCATION_STRATEGIES`). Needs no TensorRT."""
    from common import trt as trt_tools

    def profile(batches: tuple[int, int, int]) -> Any:
        return trt_tools.batch_profile(input_name, sample_shape, *batches)

    narrow_profiles = tuple(profile(r) for r in narrow)
    use = profile_index_for([p.shapes[input_name] for p in narrow_profiles], (batch, *sample_shape))
    shapes = {input_name: (batch, *sample_shape)}
    configs = [trt_tools.BuildConfig(profiles=narrow_profiles, tactic_sources=sources) for sources in tactic_sources.values()]
    commands = [trt_tools.trtexec_command(onnx_name, config, shapes=shapes, use_profile=use) for config in configs]
    wide_config = trt_tools.BuildConfig(profiles=(profile(wide),), tactic_sources=next(iter(tactic_sources.values())))
    commands.append(trt_tools.trtexec_command(onnx_name, wide_config, shapes=shapes))
    commands += [trt_tools.trtexec_command(onnx_name, configs[0], shapes=shapes, use_profile=use, allocation_strategy=s)
                 for s in STRATEGIES[1:]]
    return commands


def engine_outputs(runner: Any, inputs: Mapping[int, torch.Tensor], input_name: str = "input") -> dict[int, torch.Tensor]:
    """The engine's output at each batch (context 0, on the profile that holds the batch)."""
    out = {}
    for batch, x in inputs.items():
        profile = profile_index_for(runner.specs[input_name].profile_shapes, tuple(x.shape))
        if runner.context(0).active_optimization_profile != profile:
            runner.set_optimization_profile(0, profile)
        result = runner.run({input_name: x})
        out[batch] = next(iter(result.values())).float().cpu()
    return out


def trt_switch_studies(engine: Any, label: str, backend: str, input_name: str, sample_shape: Sequence[int], *,
                       shape_pair: tuple[int, int], profile_pair: tuple[int, int], cycles: int,
                       steady_runs: int = 5) -> tuple[dict[str, SwitchStudy], dict[str, list[dict]]]:
    """The three ways to serve two batch sizes from one engine, each alternated `cycles` times:

    - ``"set_input_shape"``: one context, both batches in one profile (`shape_pair`);
    - ``"profile switch"``: one context, the batches in two profiles (`profile_pair`);
    - ``"context per profile"``: two contexts, each bound once to its profile and batch.

    Returns the studies and the device memory each arrangement holds (:func:`trt_memory_rows`).
    """
    from common.trt import EngineRunner

    one = EngineRunner(engine)
    ranges = one.specs[input_name].profile_shapes

    def bindings(batches: Sequence[int]) -> dict[Hashable, Binding]:
        return {b: (profile_index_for(ranges, (b, *sample_shape)), {input_name: (b, *sample_shape)}) for b in batches}

    a, b = shape_pair
    studies = {"set_input_shape": switch_study(
        f"{label}: set_input_shape {a}<->{b}", backend, trt_targets(one, bindings(shape_pair), "shape"),
        alternating(list(shape_pair), cycles), steady_runs=steady_runs)}
    a, c = profile_pair
    studies["profile switch"] = switch_study(
        f"{label}: profile switch {a}<->{c}", backend, trt_targets(one, bindings(profile_pair), "profile"),
        alternating(list(profile_pair), cycles), steady_runs=steady_runs)
    memory = {"one context, switching profiles": trt_memory_rows(one, input_name)}
    per_profile = EngineRunner(engine, num_contexts=2)
    studies["context per profile"] = switch_study(
        f"{label}: context per profile {a}<->{c}", backend, trt_targets(per_profile, bindings(profile_pair), "contexts"),
        alternating(list(profile_pair), cycles), steady_runs=steady_runs)
    memory["one context per profile"] = trt_memory_rows(per_profile, input_name)
    return studies, memory


def build_engines(onnx_fp16: Path, sample_shape: Sequence[int], *, narrow: Sequence[tuple[int, int, int]],
                  wide: tuple[int, int, int], tactic_sources: Mapping[str, frozenset[str]],
                  input_name: str = "input") -> dict[str, Any]:
    """The lab's engines from one FP16 ONNX, each a ``common.trt.build_engine`` result.

    Per entry of `tactic_sources` (label -> TensorRT tactic sources) one engine with a profile per
    `narrow` (min, opt, max) batch range; then "wide profile": one profile `wide`, with the first
    entry's sources. Each is ``BuildConfig(profiles=..., tactic_sources=...)``, as trtexec's
    ``--minShapes/--optShapes/--maxShapes`` and ``--tacticSources``.
    """
    from common import trt as trt_tools

    def profile(batches: tuple[int, int, int]) -> Any:
        return trt_tools.batch_profile(input_name, sample_shape, *batches)

    narrow_profiles = tuple(profile(r) for r in narrow)
    builds = {label: trt_tools.build_engine(onnx_fp16, trt_tools.BuildConfig(profiles=narrow_profiles, tactic_sources=sources))
              for label, sources in tactic_sources.items()}
    builds["wide profile"] = trt_tools.build_engine(onnx_fp16, trt_tools.BuildConfig(
        profiles=(profile(wide),), tactic_sources=next(iter(tactic_sources.values()))))
    return builds


def tensorrt_backend() -> str:
    """What produced the TensorRT numbers, e.g. 'TensorRT 11.4.0'."""
    from common import trt as trt_tools

    return f"TensorRT {trt_tools.version()}"


def build_summary(builds: Mapping[str, Any]) -> str:
    """One line per engine build: its seconds (a cached engine's are its original build's) and plan size."""
    backend = tensorrt_backend()
    lines = []
    for label, build in builds.items():
        cached = " (engine from the cache: the time of its original build)" if build.from_cache else ""
        lines.append(f"{backend} {label:13}: build {build.build_seconds:6.1f} s{cached}; "
                     f"plan {build.plan_size_bytes / 2**20:.1f} MiB")
    return "\n".join(lines)


def engine_width_study(narrow_engine: Any, wide_engine: Any, input_name: str, sample_shape: Sequence[int],
                       batches: Sequence[int], **timing: Any) -> list[dict]:
    """:func:`profile_width_study` of two engines, each run by a new ``common.trt.EngineRunner``."""
    from common.trt import EngineRunner

    return profile_width_study(EngineRunner(narrow_engine), EngineRunner(wide_engine), input_name, sample_shape,
                               batches, **timing)


def verify_engines(builds: Mapping[str, Any], name: str, scale: str, batches: Sequence[int],
                   input_name: str = "input") -> dict[str, float]:
    """Each FP16 engine's worst relative error over `batches` against the zoo model `name` in FP32.

    Raises :class:`common.checks.VerificationError` for an engine beyond the FP16 whole-model
    tolerance: its timings would mean nothing.
    """
    from common.trt import EngineRunner

    inputs = {b: models.example_input(name, b, scale, device="cuda", dtype=torch.float16) for b in batches}
    reference = reference_outputs(name, scale, batches, device="cuda")
    worst = {}
    for label, build in builds.items():
        outputs = engine_outputs(EngineRunner(build.engine), inputs, input_name)
        worst[label] = max(checks.verify(out, reference[b], f"TensorRT engine '{label}' at batch {b} against FP32",
                                         tol=tolerance("fp16")) for b, out in outputs.items())
    return worst
