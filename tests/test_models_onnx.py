import numpy as np
import onnx as onnx_pkg
import pytest
import torch

from common import models
from common import onnx as onnx_tools


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "transformer"])
def test_zoo_models_are_seeded_and_shaped(name):
    a, b = models.build(name, "small"), models.build(name, "small")
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    x = models.example_input(name, 3, "small")
    assert torch.equal(x, models.example_input(name, 3, "small"))
    with torch.inference_mode():
        y = a(x)
    assert y.shape[0] == 3 and torch.isfinite(y).all()
    other = models.build(name, "small", seed=1)
    assert any(not torch.equal(p, q) for p, q in zip(other.state_dict().values(), a.state_dict().values()))


def test_full_scale_specs_are_the_documented_ones():
    assert models.spec("resnet50").sample_shape == (3, 224, 224)
    assert models.spec("transformer").sample_shape == (128, 768)
    assert models.parameter_count(models.build("resnet50")) == pytest.approx(25.6e6, rel=0.01)
    with pytest.raises(KeyError, match="zoo has"):
        models.spec("vgg")
    with pytest.raises(ValueError):
        models.TransformerBlock(d_model=100, n_heads=12)


@pytest.mark.parametrize("name", ["resnet18", "transformer"])
def test_export_has_dynamic_batch_and_matches_pytorch(tmp_path, name):
    model = models.build(name, "small")
    path = onnx_tools.export(model, models.example_input(name, 2, "small"), tmp_path / f"{name}.onnx")
    shapes = onnx_tools.io_shapes(path)
    assert shapes["input"][0] == "batch" and shapes["output"][0] == "batch"
    # A batch size the export never saw must run and match PyTorch.
    x = models.example_input(name, 5, "small", seed=3)
    err = onnx_tools.check_export(model, path, x)
    assert err < 1e-4
    counts = onnx_tools.node_counts(path)
    assert ("Conv" in counts) == name.startswith("resnet")
    assert onnx_tools.sha256(path) == onnx_tools.sha256(path) and len(onnx_tools.sha256(path)) == 64


def test_check_export_catches_a_wrong_graph(tmp_path):
    model = models.build("resnet18", "small")
    path = onnx_tools.export(model, models.example_input("resnet18", 1, "small"), tmp_path / "m.onnx")
    other = models.build("resnet18", "small", seed=7)
    with pytest.raises(AssertionError, match="relative error"):
        onnx_tools.check_export(other, path, models.example_input("resnet18", 2, "small"))


def test_relative_error_rules():
    ref = np.ones((2, 3))
    assert onnx_tools.max_relative_error(ref, ref) == 0
    assert onnx_tools.max_relative_error(ref * 1.01, ref) == pytest.approx(0.01)
    assert onnx_tools.max_relative_error(ref * np.nan, ref) == float("inf")
    with pytest.raises(ValueError, match="shapes differ"):
        onnx_tools.max_relative_error(np.ones(3), ref)


def test_fp16_export_carries_fp16_io(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("FP16 export runs the model in FP16 on the GPU")
    model = models.build("transformer", "small")
    path = onnx_tools.export(model, models.example_input("transformer", 2, "small"), tmp_path / "h.onnx",
                             precision="fp16")
    m = onnx_pkg.load(str(path))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx_pkg.TensorProto.FLOAT16


def test_portable_caps_the_ir_version_for_onnx_runtime(tmp_path):
    graph = onnx_pkg.helper.make_graph([onnx_pkg.helper.make_node("Relu", ["x"], ["y"])], "g",
                                       [onnx_pkg.helper.make_tensor_value_info("x", onnx_pkg.TensorProto.FLOAT, [2])],
                                       [onnx_pkg.helper.make_tensor_value_info("y", onnx_pkg.TensorProto.FLOAT, [2])])
    model = onnx_pkg.helper.make_model(graph, opset_imports=[onnx_pkg.helper.make_opsetid("", 17)])
    model.ir_version = 14
    assert onnx_tools.portable(model).ir_version == onnx_tools.PORTABLE_IR_VERSION
    old = onnx_pkg.helper.make_model(graph, opset_imports=[onnx_pkg.helper.make_opsetid("", 17)])
    old.ir_version = 8
    assert onnx_tools.portable(old).ir_version == 8
    onnx_pkg.save(model, str(tmp_path / "relu.onnx"))
    y = onnx_tools.ort_run(tmp_path / "relu.onnx", np.array([-1.0, 2.0], dtype=np.float32))
    assert y.tolist() == [0.0, 2.0]


def test_an_empty_or_broken_onnx_file_is_an_error_not_an_empty_graph(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="holds no ONNX graph"):
        onnx_tools.node_counts(empty)                  # was {}
    with pytest.raises(ValueError, match="holds no ONNX graph"):
        onnx_tools.io_shapes(empty)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 not a model \xff" * 10)
    with pytest.raises(ValueError, match="not an ONNX model"):
        onnx_tools.node_counts(garbage)


def test_ort_run_feeds_the_input_type_the_graph_declares(tmp_path):
    half = onnx_pkg.TensorProto.FLOAT16
    graph = onnx_pkg.helper.make_graph([onnx_pkg.helper.make_node("Relu", ["x"], ["y"])], "g",
                                       [onnx_pkg.helper.make_tensor_value_info("x", half, [2])],
                                       [onnx_pkg.helper.make_tensor_value_info("y", half, [2])])
    model = onnx_pkg.helper.make_model(graph, opset_imports=[onnx_pkg.helper.make_opsetid("", 17)])
    onnx_pkg.save(onnx_tools.portable(model), str(tmp_path / "half.onnx"))
    for x in (torch.tensor([-1.0, 2.0]), np.array([-1.0, 2.0]), torch.tensor([-1.0, 2.0], dtype=torch.bfloat16)):
        y = onnx_tools.ort_run(tmp_path / "half.onnx", x)   # was refused: every input was cast to FP32
        assert y.dtype == np.float16 and y.tolist() == [0.0, 2.0]


def test_export_precision_is_checked_and_case_insensitive(tmp_path):
    model = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'fp16', got 'int4'"):
        onnx_tools.export(model, torch.ones(1, 4), tmp_path / "m.onnx", precision="int4")   # was a bare KeyError
    path = onnx_tools.export(model, torch.ones(1, 4), tmp_path / "m.onnx", precision="FP32")
    assert onnx_tools.node_counts(path) == {"Gemm": 1}


def test_forward_with_hooks_runs_once_without_grad_and_removes_its_hooks():
    import torch

    from common.models import forward_with_hooks

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    seen = []
    y = forward_with_hooks(net, torch.ones(2, 4), [(net[0], lambda m, args, out: seen.append(out.shape))])
    assert seen == [torch.Size([2, 3])] and not y.requires_grad
    net(torch.ones(1, 4))
    assert len(seen) == 1                                   # the hook is gone after the call

    def boom(m, args, out):
        raise RuntimeError("boom")
    try:
        forward_with_hooks(net, torch.ones(1, 4), [(net[1], boom)])
    except RuntimeError:
        pass
    net(torch.ones(1, 4))                                   # removed after a failure too
