"""The advisor's checks: each fires on a small model with its problem planted, and stays silent on a
clean twin; the JSON schema; the command line's errors."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from common import advise
from common.advise import checks, render
from common.advise.evidence import Figures
from common.env import project_root

FIGURES = Figures(matmul_tflops={"fp16": 600.0, "fp32": 50.0}, ceilings_machine="test GPU")


def _model(nodes, inputs, outputs, initializers=(), opset=17, domains=()):
    graph = helper.make_graph(nodes, "planted", inputs, outputs, initializer=list(initializers))
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 10
    return model


def _save(tmp_path, model, name="m.onnx", external=False):
    path = tmp_path / name
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=name + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


def _findings(tmp_path, model, precision="fp16", batches=(1,), name="m.onnx"):
    return advise.advise(_save(tmp_path, model, name), precision=precision, batches=batches, figures=FIGURES)


def _named(findings, check):
    return [f for f in findings if f.check == check]


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _weight(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def _linear(k, n, batch="batch", weight=None):
    w = weight if weight is not None else np.random.default_rng(0).standard_normal((k, n))
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")],
                  [_vi("x", [batch, k])], [_vi("y", [batch, n])], [_weight("w", w)])


# -- 01, 04: batch and other dynamic dimensions ------------------------------------------------------

def test_dynamic_batch_gives_a_profile_and_fixed_batch_gives_advice(tmp_path):
    found = _named(_findings(tmp_path, _linear(64, 64), batches=(1, 8, 32)), "dynamic-batch")
    assert [f.severity for f in found] == ["info"]
    assert "min 1, opt 8, max 32" in found[0].detail and "--optShapes=x:8x64" in found[0].detail
    fixed = _named(_findings(tmp_path, _linear(64, 64, batch=4), name="fixed.onnx"), "dynamic-batch")
    assert [f.severity for f in fixed] == ["advice"] and "fixed batch of 4" in fixed[0].detail


def test_dynamic_dims_beyond_the_batch_are_flagged(tmp_path):
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["batch", "seq", 8])],
                   [_vi("y", ["batch", "seq", 8])])
    found = _named(_findings(tmp_path, model), "dynamic-dims")
    assert len(found) == 1 and "axis 1 (seq)" in found[0].detail
    assert not _named(_findings(tmp_path, _linear(8, 8), name="clean.onnx"), "dynamic-dims")


# -- 03: launch-bound -----------------------------------------------------------------------------

def test_many_small_ops_are_launch_bound_and_one_big_matmul_is_not(tmp_path):
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(200)]
    chain = _model(nodes, [_vi("t0", ["batch", 16])], [_vi("t200", ["batch", 16])])
    assert _named(_findings(tmp_path, chain), "launch-bound")[0].severity == "advice"
    big = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [8192, 8192])], [_vi("y", [8192, 8192])],
                 [numpy_helper.from_array(np.zeros((8192, 8192), np.float16), "w")])
    big.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    big.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    assert _named(_findings(tmp_path, big, name="big.onnx"), "launch-bound")[0].severity == "info"


# -- 05: fusion -------------------------------------------------------------------------------------

def test_inverse_transpose_pair_fires_and_a_lone_transpose_does_not(tmp_path):
    pair = _model([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1], name="to_nhwc"),
                   helper.make_node("Transpose", ["t"], ["y"], perm=[0, 3, 1, 2], name="to_nchw")],
                  [_vi("x", [1, 3, 4, 5])], [_vi("y", [1, 3, 4, 5])])
    found = _named(_findings(tmp_path, pair), "transpose-pair")
    assert len(found) == 1 and found[0].nodes == ["to_nhwc", "to_nchw"]
    lone = _model([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], [_vi("x", [1, 3, 4, 5])],
                  [_vi("y", [1, 4, 5, 3])])
    assert not _named(_findings(tmp_path, lone, name="lone.onnx"), "transpose-pair")


def _layernorm_chain():
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1]),
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Pow", ["centred", "two"], ["square"]),
        helper.make_node("ReduceMean", ["square"], ["var"], axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["var_eps"]),
        helper.make_node("Sqrt", ["var_eps"], ["std"]),
        helper.make_node("Div", ["centred", "std"], ["y"]),
    ]
    return _model(nodes, [_vi("x", ["batch", 16])], [_vi("y", ["batch", 16])],
                  [_weight("two", 2.0), _weight("eps", 1e-5)], opset=17)


def test_hand_written_layernorm_fires_and_layernormalization_does_not(tmp_path):
    assert len(_named(_findings(tmp_path, _layernorm_chain()), "hand-written-layernorm")) == 1
    clean = _model([helper.make_node("LayerNormalization", ["x", "g"], ["y"], axis=-1)], [_vi("x", ["batch", 16])],
                   [_vi("y", ["batch", 16])], [_weight("g", np.ones(16))])
    assert not _named(_findings(tmp_path, clean, name="ln.onnx"), "hand-written-layernorm")


def test_gelu_and_softmax_chains(tmp_path):
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["s"]), helper.make_node("Erf", ["s"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["a"]), helper.make_node("Mul", ["x", "a"], ["m"]),
             helper.make_node("Exp", ["m"], ["ex"]), helper.make_node("ReduceSum", ["ex", "axes"], ["sum"]),
             helper.make_node("Div", ["ex", "sum"], ["y"])]
    model = _model(nodes, [_vi("x", ["batch", 16])], [_vi("y", ["batch", 16])],
                   [_weight("sqrt2", 1.4142), _weight("one", 1.0),
                    numpy_helper.from_array(np.array([-1], np.int64), "axes")])
    found = _findings(tmp_path, model)
    assert len(_named(found, "gelu-from-erf")) == 1 and len(_named(found, "softmax-chain")) == 1
    clean = _model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], [_vi("x", ["batch", 16])],
                   [_vi("y", ["batch", 16])])
    clean_found = _findings(tmp_path, clean, name="softmax.onnx")
    assert not _named(clean_found, "softmax-chain") and not _named(clean_found, "gelu-from-erf")


def test_custom_domain_needs_a_plugin(tmp_path):
    model = _model([helper.make_node("FusedLayerNorm", ["x"], ["y"], domain="trtlabs", name="fused")],
                   [_vi("x", ["batch", 16])], [_vi("y", ["batch", 16])], domains=("trtlabs",))
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    graph = advise.graph.ModelGraph(path=path, model=model)
    graph.producer, graph.shapes = {"y": model.graph.node[0]}, {"x": ["batch", 16]}
    found = checks.custom_domains(graph, checks.Context(figures=FIGURES))
    assert len(found) == 1 and found[0].severity == "warning" and found[0].nodes == ["fused"]
    assert "'trtlabs'" in found[0].detail
    assert not _named(_findings(tmp_path, _linear(8, 8), name="std.onnx"), "custom-domain")


# -- 06: reduce and shuffle -------------------------------------------------------------------------

def test_reduce_over_a_non_trailing_axis(tmp_path):
    def reduce(axes):
        out = ["batch", 56] if axes == [1] else ["batch", 256]
        return _model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0, name="sum")],
                      [_vi("x", ["batch", 256, 56])], [_vi("y", out)],
                      [numpy_helper.from_array(np.array(axes, np.int64), "axes")], opset=18)
    found = _named(_findings(tmp_path, reduce([1])), "reduce-non-trailing")
    assert len(found) == 1 and "axes [1] (lengths [256])" in found[0].detail
    assert not _named(_findings(tmp_path, reduce([-1]), name="last.onnx"), "reduce-non-trailing")


def test_transpose_that_moves_memory_vs_one_of_size_one_axes(tmp_path):
    moving = _model([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 1])], [_vi("x", [2, 3, 4])],
                    [_vi("y", [2, 4, 3])])
    assert len(_named(_findings(tmp_path, moving), "transpose-moves-memory")) == 1
    free = _model([helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2])], [_vi("x", [1, 3, 4])],
                  [_vi("y", [3, 1, 4])])
    assert not _named(_findings(tmp_path, free, name="free.onnx"), "transpose-moves-memory")


# -- 07: alignment ----------------------------------------------------------------------------------

def test_misaligned_matmul_names_the_padding_and_aligned_is_clean(tmp_path):
    found = _named(_findings(tmp_path, _linear(4095, 1000)), "misaligned-matmul")
    assert len(found) == 1 and found[0].nodes == ["fc"] and "K 4095 -> 4096" in found[0].effect
    assert "multiples of 8 (fp16)" in found[0].detail
    assert not _named(_findings(tmp_path, _linear(4096, 1000), name="ok.onnx"), "misaligned-matmul")
    fp8 = _named(_findings(tmp_path, _linear(4104, 1024), precision="fp8", name="fp8.onnx"), "misaligned-matmul")
    assert len(fp8) == 1 and "K 4104 -> 4112" in fp8[0].effect


def test_conv_channels_and_4d_matmul(tmp_path):
    conv = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])],
                  [_vi("x", ["batch", 63, 8, 8])], [_vi("y", ["batch", 64, 8, 8])],
                  [_weight("w", np.zeros((64, 63, 3, 3)))])
    found = _named(_findings(tmp_path, conv), "misaligned-matmul")
    assert len(found) == 1 and "C_in 63 -> 64" in found[0].effect
    attn = _model([helper.make_node("MatMul", ["q", "k"], ["y"])], [_vi("q", ["batch", 12, 128, 64]),
                   _vi("k", ["batch", 12, 64, 128])], [_vi("y", ["batch", 12, 128, 128])])
    assert len(_named(_findings(tmp_path, attn, name="attn.onnx"), "matmul-4d")) == 1


# -- 08, 09: precision and sparsity ------------------------------------------------------------------

def test_precision_counts_types_and_flops_share(tmp_path):
    found = _findings(tmp_path, _linear(4096, 4096), batches=(64,))
    summary = _named(found, "precision")[0]
    assert "'fp32': 1" in summary.detail and "0 Q/DQ" in summary.detail
    share = _named(found, "flops-share")[0]
    assert share.nodes == ["fc"] and "100% of 2.15 GFLOP at batch 64" in share.detail


def test_weights_already_2_4_are_detected_and_dense_ones_are_not(tmp_path):
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((64, 32))   # MatMul weight (K, N): groups of 4 run down K
    sparse = dense.copy()
    for n in range(32):
        for g in range(0, 64, 4):
            sparse[g + np.argsort(np.abs(sparse[g:g + 4, n]))[:2], n] = 0.0
    assert checks.is_2_4_along_input(sparse, "MatMul") and not checks.is_2_4_along_input(dense, "MatMul")
    assert len(_named(_findings(tmp_path, _linear(64, 32, weight=sparse)), "already-2-4")) == 1
    assert not _named(_findings(tmp_path, _linear(64, 32, weight=dense), name="dense.onnx"), "already-2-4")
    small = _named(_findings(tmp_path, _linear(64, 32, weight=sparse), name="small.onnx"), "too-small-for-2-4")
    assert small and small[0].nodes == ["fc"]


def test_conv_2_4_runs_along_input_channels():
    w = np.ones((2, 8, 3, 3))
    w[:, [0, 1, 4, 5]] = 0.0            # two zeros in every group of 4 input channels
    assert checks.is_2_4_along_input(w, "Conv")
    w_memory_order = np.ones((2, 8, 2, 2))
    flat = w_memory_order.reshape(-1)
    flat[0::4] = flat[1::4] = 0.0           # 2:4 in memory order (along the kernel window), not along C_in
    assert not checks.is_2_4_along_input(w_memory_order, "Conv")


# -- reading, external data, schema, command line ---------------------------------------------------

def test_external_data_model_is_read_and_its_weights_load_on_demand(tmp_path):
    model = _linear(4095, 64)
    path = _save(tmp_path, model, "ext.onnx", external=True)
    assert (tmp_path / "ext.onnx.data").stat().st_size == 4095 * 64 * 4
    graph = advise.load(path)
    assert graph.weight("w").shape == (4095, 64) and graph.weight_bytes() == 4095 * 64 * 4
    assert _named(advise.advise(graph, figures=FIGURES), "misaligned-matmul")


def test_json_schema_fields(tmp_path):
    found = _findings(tmp_path, _linear(4095, 64))
    data = json.loads(render.as_json("m.onnx", "fp16", (1,), found))
    assert data["schema_version"] == render.SCHEMA_VERSION and data["precision"] == "fp16"
    for finding in data["findings"]:
        assert tuple(finding) == render.FINDING_FIELDS
        assert finding["severity"] in advise.SEVERITIES and isinstance(finding["nodes"], list)
        assert all(isinstance(finding[k], str) and finding[k] for k in ("lab", "check", "detail", "effect", "evidence"))
    assert "<table>" in render.as_html("m.onnx", found)


def test_every_check_has_a_lab_that_exists():
    labs = {p.stem for p in (project_root() / "labs").glob("*.ipynb")}
    assert {lab for lab, _, _ in advise.CHECKS} <= labs


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "common.advise", *map(str, args)], capture_output=True, text=True,
                          cwd=project_root(), timeout=120)


def test_command_line_refuses_bad_models_with_a_clear_error(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    for path, words in ((tmp_path / "missing.onnx", "no ONNX model"), (empty, "is empty"),
                        (garbage, "not an ONNX model")):
        result = _cli(path)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_command_line_writes_json_and_html(tmp_path):
    path = _save(tmp_path, _linear(4095, 64))
    result = _cli(path, "--batch", "1", "8", "--json", tmp_path / "a.json", "--html", tmp_path / "a.html")
    assert result.returncode == 0, result.stderr
    assert "lab 07_matmul_tensor_cores" in result.stdout and "misaligned-matmul" in result.stdout
    assert json.loads((tmp_path / "a.json").read_text())["batches"] == [1, 8]
    assert (tmp_path / "a.html").read_text().startswith("<!doctype html>")


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="precision"):
        checks.Context(precision="fp4")
    with pytest.raises(ValueError, match="batch"):
        checks.Context(batches=(0,))


def test_build_adds_what_the_engine_shows_with_stand_ins(tmp_path, monkeypatch):
    """--build without TensorRT: the engine path's logic on stand-ins for the course's TensorRT plumbing."""
    from types import SimpleNamespace

    from common.advise import engine
    from common.trt.profile import LayerTimes

    shapes_set = {}

    class Runner:
        def __init__(self, built):
            self.built = built

        def set_input_shapes(self, shapes):
            shapes_set.update(shapes)

        def context(self, index):
            return "context"

    times = LayerTimes()
    for name, ms in (("fc", 3.0), ("Reformat fc", 1.0)):
        times.add(name, ms)
    reformat = SimpleNamespace(name="Reformat fc")
    info = SimpleNamespace(layers=[1, 2], fused_layers=lambda: [], reformat_layers=lambda: [reformat])
    built = SimpleNamespace(engine="engine", build_seconds=1.5, log=SimpleNamespace(lines=lambda: []))
    monkeypatch.setattr(engine.env, "require", lambda *needs: None)
    monkeypatch.setattr(engine.env, "detect", lambda: SimpleNamespace(tensorrt="11.4"))
    monkeypatch.setattr(engine, "build_engine", lambda path, config, verbose: built)
    monkeypatch.setattr(engine, "EngineRunner", Runner)
    monkeypatch.setattr(engine, "inspect_engine", lambda e, context: info)
    monkeypatch.setattr(engine, "profile_layers", lambda runner: times)
    monkeypatch.setattr(engine, "layer_sparsity", lambda i: [])
    graph = advise.load(_save(tmp_path, _linear(64, 64)))
    found = engine.engine_findings(graph, checks.Context(batches=(1, 8, 32), figures=FIGURES))
    assert shapes_set == {"x": [8, 64]}
    by_check = {f.check: f for f in found}
    assert "25.0% of the engine's profiled time at batch 8" in by_check["engine-reformats"].detail
    assert by_check["engine-slowest-layers"].nodes == ["fc", "Reformat fc"]
    assert by_check["engine-fusion"].detail.startswith("2 engine layers for 1 ONNX nodes")


def test_flops_follow_the_batch_through_a_reshape_computed_from_it(tmp_path):
    # x [batch, 8, 16] -> Reshape to [Shape(x)[0] * 8, 16] (the batch folded in, as an attention block
    # does) -> MatMul with a 16x32 weight: symbolic inference loses the batch; at batch 4 it is 32 rows.
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
             helper.make_node("Mul", ["b", "eight"], ["rows"]),
             helper.make_node("Concat", ["rows", "sixteen"], ["new_shape"], axis=0),
             helper.make_node("Reshape", ["x", "new_shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["y"], name="fc")]
    consts = [numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
              numpy_helper.from_array(np.array([8], dtype=np.int64), "eight"),
              numpy_helper.from_array(np.array([16], dtype=np.int64), "sixteen"),
              _weight("w", np.ones((16, 32)))]
    model = _model(nodes, [_vi("x", ["batch", 8, 16])], [_vi("y", [None, 32])], consts)
    graph = advise.graph.load(_save(tmp_path, model))
    fc = next(n for n in graph.nodes if n.name == "fc")
    assert not isinstance((graph.shape(fc.input[0]) or [None])[0], int)   # symbolic: the batch is lost
    assert graph.shape_at(fc.input[0], 4) == [32, 16]
    assert checks.node_flops(graph, fc, 4) == 2 * 32 * 32 * 16
    assert checks.node_flops(graph, fc, 8) == 2 * 64 * 32 * 16
