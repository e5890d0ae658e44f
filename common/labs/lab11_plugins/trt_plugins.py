"""Lab 11's TensorRT study: the bias + GELU kernel of :mod:`.kernels` as two TensorRT plugins.

Both are written with ``tensorrt.plugin`` and registered by :func:`register_plugins` (the only place
that imports TensorRT, Triton and PyTorch, so this module loads on any machine):

- "trtlabs::BiasGeluFP32Linear" declares one type/format combination, FP32 in TensorRT's LINEAR
  (channel-major) layout, no tactics, and a JIT implementation. In an FP16 network whose
  convolutions prefer channel-last layouts, the network must cast to FP32 around it and TensorRT
  must reformat to LINEAR and back: layers the engine inspector lists.
- "trtlabs::BiasGelu" declares FP16 in LINEAR or HWC8 and FP32 in LINEAR or HWC, each with the
  five tactics of ``kernels.TACTICS`` (Triton block sizes and warp counts). The builder
  runs every (combination, tactic) and keeps the fastest. It has both implementations: JIT (a
  Python callback on every enqueue) and AOT (the kernel compiled to PTX at build time and baked
  into the engine, which then runs without Python). AOT Python plugins, and the two-argument
  ``network.add_plugin(call, aot)`` that picks one, arrived in TensorRT 10.9: on 10.8 the plugin
  registers its JIT implementation only and the study builds the JIT engines only
  (:func:`aot_plugins_available`, guarded through :mod:`common.trt.compat`).

:func:`build_conv_plugin_engine` builds conv -> plugin -> conv in FP16 with the network API, and
:func:`study` reads each engine with the inspector, checks it against PyTorch and times it.

No ``from __future__ import annotations`` here: ``tensorrt.plugin`` reads the registered functions'
type hints as objects.
"""

import collections
import functools
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Tuple, Union

import numpy as np

from common import bench, checks, env
from common.trt import compat
from common.trt.build import build_plan, load_engine
from common.trt.logger import BuildLog, make_logger
from common.trt.profile import profile_layers, share_pct

from . import kernels
from .calls import device_comparison, host_ratio

if TYPE_CHECKING:
    import tensorrt as trt

FP32_LINEAR_PLUGIN = "trtlabs::BiasGeluFP32Linear"
MULTI_FORMAT_PLUGIN = "trtlabs::BiasGelu"
PLUGIN_LAYER_NAME = "bias_gelu_plugin"
CAST_LAYER_NAMES = ("cast_to_fp32", "cast_to_fp16")

#: What each plugin declares, as ``tensorrt.plugin.AutoTuneCombination(types, formats)`` takes it:
#: one entry per position (x, bias, y); "A|B" at several positions pairs the options in order.
DECLARED: Dict[str, List[Tuple[str, str]]] = {
    FP32_LINEAR_PLUGIN: [("FP32, FP32, FP32", "LINEAR")],
    MULTI_FORMAT_PLUGIN: [("FP16, FP16, FP16", "LINEAR|HWC8, LINEAR, LINEAR|HWC8"),
                          ("FP32, FP32, FP32", "LINEAR|HWC, LINEAR, LINEAR|HWC")],
}
#: The channel-last formats the kernel reads, with the vector width each pads C to.
CHANNEL_LAST_VECTOR = {"HWC8": 8, "HWC": 1}

#: Every enqueue of a JIT implementation, by (plugin, tactic, dtype, format): the builder's timing
#: runs during a build, then inference.
CALLS: "collections.Counter[Tuple[str, int, str, str]]" = collections.Counter()


def expand_declared(types: str, formats: str) -> List[Tuple[Tuple[str, ...], Tuple[str, ...]]]:
    """The (types, formats) per position that one declaration stands for, as TensorRT is offered them.

    Only the "|" (paired options) form is handled, the one this lab declares.
    """
    def columns(text: str) -> List[List[str]]:
        if "*" in text:
            raise ValueError("only '|' (paired) options are expanded here")
        return [[option.strip() for option in position.split("|")] for position in text.split(",")]

    type_columns, format_columns = columns(types), columns(formats)
    if len(format_columns) == 1:
        format_columns = format_columns * len(type_columns)
    if len(type_columns) != len(format_columns):
        raise ValueError(f"{len(type_columns)} type positions but {len(format_columns)} format positions")

    def rows(cols: List[List[str]]) -> List[Tuple[str, ...]]:
        count = max(len(options) for options in cols)
        if any(len(options) not in (1, count) for options in cols):
            raise ValueError(f"paired options must have equal counts: {cols}")
        return [tuple(options[i] if len(options) > 1 else options[0] for options in cols) for i in range(count)]

    return [(t, f) for t in rows(type_columns) for f in rows(format_columns)]


def aot_plugins_available(trt: Any, trtp: Any) -> bool:
    """Whether this TensorRT can build the AOT plugin: ``tensorrt.plugin.aot_impl`` and the
    two-argument ``network.add_plugin(call, aot)`` (both 10.9 and newer)."""
    return compat.has_aot_plugins(trtp) and compat.at_least(trt, 10, 9)


def add_plugin_layer(trt: Any, network: Any, plugin_call: Any, aot: bool) -> Any:
    """``network.add_plugin`` for a ``tensorrt.plugin`` op call, asking for its JIT or AOT
    implementation where TensorRT lets a network choose (10.9 and newer); before, JIT only."""
    if compat.at_least(trt, 10, 9):
        return network.add_plugin(plugin_call, aot)
    if aot:
        raise RuntimeError(f"TensorRT {trt.__version__} has no ahead-of-time Python plugins: they arrived in "
                           "10.9; build the JIT variant")
    return network.add_plugin(plugin_call)


@functools.cache
def register_plugins() -> Tuple[str, str]:
    """Register both plugins with TensorRT (once per process); returns their ids.

    The JIT implementations call back into this process, so an engine built with them can only be
    deserialized where this function has run; the AOT one carries its kernel inside the engine.
    """
    import tensorrt as trt
    import tensorrt.plugin as trtp

    return register_with(trt, trtp)


def register_with(trt: Any, trtp: Any) -> Tuple[str, str]:
    """:func:`register_plugins` with the ``tensorrt`` and ``tensorrt.plugin`` modules passed in; the
    AOT implementation only where ``tensorrt.plugin`` has ``aot_impl``."""
    import torch

    torch_dtypes = {trt.DataType.HALF: torch.float16, trt.DataType.FLOAT: torch.float32}

    def enqueue(plugin: str, x: trtp.Tensor, bias: trtp.Tensor, y: trtp.Tensor, stream: int, tactic: int) -> None:
        layout = x.format.name
        CALLS[(plugin, tactic, x.dtype.name, layout)] += 1
        kernels.launch_from_pointers(x.data_ptr, bias.data_ptr, y.data_ptr, tuple(x.shape), torch_dtypes[x.dtype],
                                     channels_last=layout in CHANNEL_LAST_VECTOR,
                                     vector=CHANNEL_LAST_VECTOR.get(layout, 1),
                                     tactic=kernels.TACTIC_BY_ID.get(tactic, kernels.DEFAULT_TACTIC), stream=stream)

    # -- FP32, LINEAR only, one tactic, JIT -------------------------------------------------------
    @trtp.register(FP32_LINEAR_PLUGIN)
    def fp32_linear_shape(x: trtp.TensorDesc, bias: trtp.TensorDesc) -> trtp.TensorDesc:
        return x.like()

    @trtp.autotune(FP32_LINEAR_PLUGIN)
    def fp32_linear_formats(x: trtp.TensorDesc, bias: trtp.TensorDesc,
                            outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
        return [trtp.AutoTuneCombination(types, formats) for types, formats in DECLARED[FP32_LINEAR_PLUGIN]]

    @trtp.impl(FP32_LINEAR_PLUGIN)
    def fp32_linear_jit(x: trtp.Tensor, bias: trtp.Tensor, outputs: Tuple[trtp.Tensor], stream: int) -> None:
        enqueue(FP32_LINEAR_PLUGIN, x, bias, outputs[0], stream, kernels.DEFAULT_TACTIC.id)

    # -- FP16/FP32, channel-major or channel-last, five tactics, JIT and AOT -----------------------
    @trtp.register(MULTI_FORMAT_PLUGIN)
    def multi_format_shape(x: trtp.TensorDesc, bias: trtp.TensorDesc) -> trtp.TensorDesc:
        return x.like()

    @trtp.autotune(MULTI_FORMAT_PLUGIN)
    def multi_format_formats(x: trtp.TensorDesc, bias: trtp.TensorDesc,
                             outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
        tactics = [t.id for t in kernels.TACTICS]
        return [trtp.AutoTuneCombination(types, formats, tactics) for types, formats in DECLARED[MULTI_FORMAT_PLUGIN]]

    @trtp.impl(MULTI_FORMAT_PLUGIN)
    def multi_format_jit(x: trtp.Tensor, bias: trtp.Tensor, outputs: Tuple[trtp.Tensor], stream: int,
                         tactic: int) -> None:
        enqueue(MULTI_FORMAT_PLUGIN, x, bias, outputs[0], stream, tactic)

    if not compat.has_aot_plugins(trtp):   # TensorRT 10.8, before AOT Python plugins: JIT only
        return FP32_LINEAR_PLUGIN, MULTI_FORMAT_PLUGIN

    @trtp.aot_impl(MULTI_FORMAT_PLUGIN)
    def multi_format_aot(x: trtp.TensorDesc, bias: trtp.TensorDesc, outputs: Tuple[trtp.TensorDesc], tactic: int
                         ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]:
        layout = x.format.name
        channels_last = layout in CHANNEL_LAST_VECTOR
        vector = CHANNEL_LAST_VECTOR.get(layout, 1)
        spec = kernels.TACTIC_BY_ID[tactic]
        dtype = "fp16" if x.dtype == trt.DataType.HALF else "fp32"
        compiled = kernels.compile_ahead_of_time(dtype, channels_last, spec)
        n, c, h, w = x.shape_expr
        pitch = trtp.cdiv(c, vector) * vector if channels_last else c
        n_elements = n * h * w * pitch          # storage elements, channel padding included
        launch = trtp.KernelLaunchParams(grid_x=trtp.cdiv(n_elements, spec.block),
                                         block_x=compiled.metadata.num_warps * 32,
                                         shared_mem=compiled.metadata.shared)
        # The kernel's scalars, between its inputs and its output, as expressions of the shape.
        values = (n_elements, c, h * w, pitch)
        scalars = trtp.SymIntExprs(len(values))
        for i, value in enumerate(values):
            scalars[i] = trtp.SymInt32(value)
        return compiled.metadata.name, compiled.asm["ptx"], launch, scalars

    return FP32_LINEAR_PLUGIN, MULTI_FORMAT_PLUGIN


# -- the network: conv -> bias + GELU plugin -> conv, FP16 -------------------------------------------

def network_weights(channels: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Seeded FP32 weights of the two 3x3 convolutions and the plugin's per-channel bias."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(9 * channels)
    return {"conv1": (rng.standard_normal((channels, channels, 3, 3)) * scale).astype(np.float32),
            "conv2": (rng.standard_normal((channels, channels, 3, 3)) * scale).astype(np.float32),
            "bias": (0.5 * rng.standard_normal(channels)).astype(np.float32)}


@dataclass
class PluginEngine:
    """One built engine: its plan, build time and the JIT calls its build made, by tactic."""

    name: str
    plugin: str
    aot: bool
    engine: "trt.ICudaEngine"
    plan: bytes = field(repr=False)
    build_seconds: float
    build_calls: Dict[Tuple[str, int, str, str], int]
    log: BuildLog = field(default_factory=BuildLog, repr=False)


def build_conv_plugin_engine(name: str, plugin: str, shape: Tuple[int, int, int, int], weights: Dict[str, np.ndarray],
                             *, aot: bool = False) -> PluginEngine:
    """Build conv3x3 -> `plugin` -> conv3x3 on an FP16 N x C x H x W input, with the network API.

    The FP32-only plugin gets a cast to FP32 before it and one back to FP16 after it: the network
    is strongly typed, so the conversion it forces is written into the network, where it shows.
    """
    env.require("tensorrt")
    import tensorrt as trt
    import tensorrt.plugin as trtp

    register_plugins()
    fp32_only = plugin == FP32_LINEAR_PLUGIN
    if fp32_only and aot:
        raise ValueError(f"{FP32_LINEAR_PLUGIN} has only a JIT implementation")
    channels = shape[1]
    conv1_w, conv2_w = weights["conv1"].astype(np.float16), weights["conv2"].astype(np.float16)
    bias = weights["bias"].astype(np.float32 if fp32_only else np.float16)
    log = BuildLog()
    builder = trt.Builder(make_logger(log))
    network = builder.create_network(compat.network_flags(trt))   # strongly typed on 10.x too
    x = network.add_input("x", trt.DataType.HALF, trt.Dims(shape))
    conv1 = network.add_convolution_nd(x, channels, trt.Dims([3, 3]), trt.Weights(conv1_w))
    conv1.padding_nd = trt.Dims([1, 1])
    conv1.name = "conv1"
    activation = conv1.get_output(0)
    if fp32_only:
        cast_in = network.add_cast(activation, trt.DataType.FLOAT)
        cast_in.name = CAST_LAYER_NAMES[0]
        activation = cast_in.get_output(0)
    bias_tensor = network.add_constant(trt.Dims([channels]), trt.Weights(bias)).get_output(0)
    namespace, op_name = plugin.split("::")
    plugin_call = getattr(getattr(trtp.op, namespace), op_name)(activation, bias_tensor)
    plugin_layer = add_plugin_layer(trt, network, plugin_call, aot)
    plugin_layer.name = PLUGIN_LAYER_NAME
    activation = plugin_layer.get_output(0)
    if fp32_only:
        cast_out = network.add_cast(activation, trt.DataType.HALF)
        cast_out.name = CAST_LAYER_NAMES[1]
        activation = cast_out.get_output(0)
    conv2 = network.add_convolution_nd(activation, channels, trt.Dims([3, 3]), trt.Weights(conv2_w))
    conv2.padding_nd = trt.Dims([1, 1])
    conv2.name = "conv2"
    output = conv2.get_output(0)
    output.name = "y"
    network.mark_output(output)

    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    calls_before = collections.Counter(CALLS)
    plan, build_seconds = build_plan(builder, network, config, log, f"the {name} engine")
    return PluginEngine(name, plugin, aot, load_engine(plan), plan, build_seconds,
                        dict(CALLS - calls_before), log)


def torch_reference(x, weights: Dict[str, np.ndarray]):
    """The same network in PyTorch FP32: conv, bias + GELU, conv (x: a CUDA tensor)."""
    import torch
    import torch.nn.functional as F

    w = {k: torch.as_tensor(v, device=x.device) for k, v in weights.items()}
    hidden = F.conv2d(x.float(), w["conv1"], padding=1)
    return F.conv2d(F.gelu(hidden + w["bias"].view(1, -1, 1, 1)), w["conv2"], padding=1)


def tactic_value(raw: Any) -> int | None:
    """The inspector's "TacticValue" ("0x0000000000000003") as an int; None when absent."""
    if raw is None:
        return None
    return int(raw, 16) if isinstance(raw, str) else int(raw)


def engine_summary(built: PluginEngine) -> Dict[str, Any]:
    """What the inspector says: layer count, the conversion layers (reformats and casts) and the
    plugin layer's input format and chosen tactic."""
    from common.trt.inspect import inspect_engine

    info = inspect_engine(built.engine)
    conversions = [layer.name for layer in info.layers
                   if layer.is_reformat or any(cast in layer.name for cast in CAST_LAYER_NAMES)]
    plugin_layer = next((layer for layer in info.layers if PLUGIN_LAYER_NAME in layer.name), None)
    plugin_input, plugin_tactic = "?", None
    if plugin_layer is not None:
        if plugin_layer.inputs:
            first = plugin_layer.inputs[0]
            plugin_input = first.format_dtype or f"{first.format} {first.dtype}"
        plugin_tactic = tactic_value(plugin_layer.raw.get("TacticValue"))
    return {"engine": built.name, "layers": len(info.layers), "conversion_layers": len(conversions),
            "conversion_names": conversions, "plugin_input": plugin_input, "plugin_tactic": plugin_tactic,
            "layer_names": [layer.name for layer in info.layers], "build_seconds": built.build_seconds}


def tactics_timed(built: PluginEngine) -> Dict[int, int]:
    """How often the builder ran each tactic of the JIT plugin while timing it."""
    counts: Dict[int, int] = collections.defaultdict(int)
    for (plugin, tactic, _, _), n in built.build_calls.items():
        if plugin == built.plugin:
            counts[tactic] += n
    return dict(sorted(counts.items()))


_BARE_DESERIALIZE = (
    "import sys, tensorrt\n"
    "runtime = tensorrt.Runtime(tensorrt.Logger(tensorrt.Logger.ERROR))\n"
    "with open(sys.argv[1], 'rb') as f:\n"
    "    engine = runtime.deserialize_cuda_engine(f.read())\n"
    "sys.exit(0 if engine is not None else 3)\n"
)


def loads_in_bare_process(plan_path: Union[str, Path]) -> bool:
    """Whether a new Python process that imports only ``tensorrt`` (no plugin registered, no
    Triton, no PyTorch) can deserialize the plan: what a C++ server or trtexec could do."""
    result = subprocess.run([sys.executable, "-c", _BARE_DESERIALIZE, str(plan_path)],
                            capture_output=True, text=True, timeout=300)
    return result.returncode == 0


#: The engines of the study: display name -> (plugin, AOT?, file name of its plan).
VARIANTS = {
    "FP32 LINEAR only (JIT)": (FP32_LINEAR_PLUGIN, False, "fp32_linear_jit.plan"),
    "FP16 + formats + tactics (JIT)": (MULTI_FORMAT_PLUGIN, False, "multi_format_jit.plan"),
    "FP16 + formats + tactics (AOT)": (MULTI_FORMAT_PLUGIN, True, "multi_format_aot.plan"),
}


def study(shape: Tuple[int, int, int, int], *, seed: int = 0) -> Dict[str, Any]:
    """Build the engines of :data:`VARIANTS` (the AOT one where :func:`aot_plugins_available`), read
    them with the inspector, check them against PyTorch (the whole-network FP16 tolerance), time them
    (interleaved passes), read each one's per-layer profile (the conversion layers' share of its time)
    and try each plan in a bare process. Needs TensorRT, Triton and a GPU."""
    import tensorrt as trt
    import tensorrt.plugin as trtp
    import torch

    from common.trt.run import EngineRunner

    weights = network_weights(shape[1], seed)
    aot_ok = aot_plugins_available(trt, trtp)
    built = {name: build_conv_plugin_engine(name, plugin, shape, weights, aot=aot)
             for name, (plugin, aot, _) in VARIANTS.items() if aot_ok or not aot}
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1)).to("cuda", torch.float16)
    expected = torch_reference(x, weights)
    runners = {name: EngineRunner(b.engine) for name, b in built.items()}
    rows = []
    for name, runner in runners.items():
        calls_before = collections.Counter(CALLS)
        output = runner.run({"x": x})["y"]
        ran = sorted({key[1] for key in (CALLS - calls_before) if key[0] == built[name].plugin})
        error = checks.relative_error(output.float(), expected)
        rows.append({**engine_summary(built[name]), "rel_error": error,
                     "matches": error <= checks.tolerance("fp16", "model"),
                     "runtime_tactic": ran[0] if len(ran) == 1 else None})
    configs = {name: {"fn": runner.enqueue, "stream": runner.stream(0), "name": f"{name}, TensorRT",
                      "backend": f"TensorRT {env.detect().tensorrt}"} for name, runner in runners.items()}
    runs = bench.measure_interleaved(configs, passes=bench.PASSES, device="cuda", warmup_ms=20, measure_ms=80)
    layer_times = {name: profile_layers(runner) for name, runner in runners.items()}   # after timing: it syncs
    plan_dir = env.cache_dir() / "lab11"
    plan_dir.mkdir(parents=True, exist_ok=True)
    for row in rows:
        name = row["engine"]
        path = plan_dir / VARIANTS[name][2]
        path.write_bytes(built[name].plan)
        row["loads_without_python"] = loads_in_bare_process(path)
        row["latency_ms"] = bench.median_latency_ms(runs[name])
        row.update(bench.kernel_fields(runs[name]))
        row["host_us_per_enqueue"] = 1e3 * bench.median_host_ms(runs[name])
        row["conversion_share_pct"] = share_pct(layer_times[name], row["conversion_names"])
        row["slowest_layers"] = [(r["layer"], r["share_pct"]) for r in layer_times[name].table(top=3)]
    timed = {name: tactics_timed(b) for name, b in built.items() if b.plugin == MULTI_FORMAT_PLUGIN and not b.aot}
    return {"rows": rows, "runs": runs, "tactics_timed": timed}


def engine_comparisons(trt_study: Dict[str, Any]) -> Tuple[bench.Comparison, Union[bench.Comparison, None]]:
    """The multi-format JIT engine against the FP32-LINEAR one (kernel time where measured), and the AOT
    engine's host time per enqueue as a multiple of the JIT one's (None where no AOT engine was built)."""
    fp32_name, jit_name, aot_name = VARIANTS
    runs = trt_study["runs"]
    host = host_ratio(runs, jit_name, aot_name) if aot_name in runs else None
    return device_comparison(runs[fp32_name], runs[jit_name]), host


def trtexec_lines(plan_dir: str = ".") -> List[str]:
    """How trtexec reproduces each engine of :data:`VARIANTS`. The engines are built with the network
    API (no ONNX), so trtexec can only load a saved plan: the AOT one runs in trtexec as it is (its
    kernel is in the plan); a JIT plan needs the plugin's Python code in the process, which trtexec is not."""
    lines = []
    for name, (_, aot, file) in VARIANTS.items():
        if aot:
            lines.append(f"{name}: trtexec --loadEngine={Path(plan_dir) / file} --dumpProfile --dumpLayerInfo")
        else:
            lines.append(f"{name}: no trtexec equivalent (a JIT Python plugin runs only in a Python process that "
                         "registered it; build and run it with lab.study)")
    return lines
