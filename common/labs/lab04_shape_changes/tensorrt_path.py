"""Lab 04 (shape changes): TensorRT's shape changes, profile switches and one context per profile.

Run only where TensorRT is installed. :func:`trt_targets` makes switching targets over one
:class:`common.trt.EngineRunner` (a shape change in one context, a profile switch in one context, or
one context per profile); :func:`trt_switch_studies` studies the three ways, :func:`trt_memory_rows`
says what each holds in device memory, :func:`profile_width_study` sets narrow profiles against one
wide one. :func:`build_engines` builds the lab's engines and :func:`verify_engines` checks each
before any of it is timed.
"""

from __future__ import annotations

import contextlib
import functools
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
    """
    rows = [{"what": f"activation memory profile {p} needs (get_device_memory_size_for_profile_v2)",
             "bytes": runner.device_memory_bytes_for_profile(p)}
            for p in range(len(runner.specs[input_name].profile_shapes))]
    per_context = runner.device_memory_bytes
    rows.append({"what": "activation memory each context allocates (device_memory_size_v2)", "bytes": per_context})
    io_bytes = [runner.io_buffer_bytes(i) for i in range(runner.num_contexts)]
    rows += [{"what": f"context {i} I/O buffers", "bytes": b} for i, b in enumerate(io_bytes)]
    rows.append({"what": f"total for {runner.num_contexts} context(s)",
                 "bytes": runner.num_contexts * per_context + sum(io_bytes)})
    return rows


def profile_width_study(narrow: Any, wide: Any, input_name: str, sample_shape: Sequence[int],
                        batches: Sequence[int], *, passes: int = 2, warmup_ms: float = 100.0,
                        measure_ms: float = 300.0) -> list[dict]:
    """Steady state at each batch: an engine with narrow profiles (the one holding the batch is
    used) against an engine with one wide profile. Both measured `passes` times, alternately."""
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
        cmp = bench.compare(runs["wide"], runs["narrow"])
        lo, opt, hi = narrow_ranges[profile]
        rows.append({"batch": batch, "narrow_profile": f"{profile}: {lo[0]}..{hi[0]} opt {opt[0]}",
                     "wide_ms": cmp.median_a_ms, "narrow_ms": cmp.median_b_ms, "speedup": cmp.speedup,
                     "significant": cmp.significant, "verdict": cmp.verdict()})
    return rows


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
    from common import trt

    def profile(batches: tuple[int, int, int]) -> Any:
        return trt.batch_profile(input_name, sample_shape, *batches)

    narrow_profiles = tuple(profile(r) for r in narrow)
    builds = {label: trt.build_engine(onnx_fp16, trt.BuildConfig(profiles=narrow_profiles, tactic_sources=sources))
              for label, sources in tactic_sources.items()}
    builds["wide profile"] = trt.build_engine(onnx_fp16, trt.BuildConfig(
        profiles=(profile(wide),), tactic_sources=next(iter(tactic_sources.values()))))
    return builds


def tensorrt_backend() -> str:
    """What produced the TensorRT numbers, e.g. 'TensorRT 11.4.0'."""
    from common import trt

    return f"TensorRT {trt.version()}"


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
