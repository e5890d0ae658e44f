"""Lab 05's module: the graph rewrites (planted transpose pairs, the LayerNorm matcher) checked with
ONNX Runtime on CPU; the Triton kernel and its torch custom op on a GPU."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch

from common import fusion
from common import onnx as onnx_tools


@pytest.fixture(scope="module")
def conv_graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    net = fusion.seeded(fusion.ConvResidualNet(4, 3))
    x = torch.randn(1, 4, 8, 8)
    original = onnx_tools.export(net, x, root / "conv.onnx", dynamic_batch=False)
    planted, n_planted = fusion.rewrite(original, root / "planted.onnx", fusion.plant_transpose_pairs)
    fixed, n_removed = fusion.rewrite(planted, root / "fixed.onnx", fusion.remove_inverse_transposes)
    return net, x, original, planted, fixed, n_planted, n_removed


@pytest.fixture(scope="module")
def norm_graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("norm")
    net = fusion.seeded(fusion.NormNet(32, 2))
    x = torch.randn(5, 32)
    original = onnx_tools.export(net, x, root / "norm.onnx", dynamic_batch=False)
    plugin, n_plugin = fusion.rewrite(original, root / "plugin.onnx", fusion.fuse_layernorm)
    twin, n_twin = fusion.rewrite(original, root / "twin.onnx", fusion.fuse_layernorm, standard=True)
    return net, x, original, plugin, twin, n_plugin, n_twin


def test_planted_pairs_are_removed_and_the_graph_computes_the_same(conv_graphs):
    net, x, original, planted, fixed, n_planted, n_removed = conv_graphs
    assert n_planted == n_removed == 3
    assert onnx_tools.node_counts(planted)["Transpose"] == 6
    assert onnx_tools.node_counts(fixed) == onnx_tools.node_counts(original) == {"Conv": 3, "Add": 3, "Relu": 3}
    reference = net(x)
    for path in (planted, fixed):
        assert onnx_tools.max_relative_error(fusion.ort_output(path, x, "disabled"), reference) < 1e-5


def test_transposes_that_do_not_cancel_are_kept():
    x = gs.Variable("x", dtype=np.float32, shape=(1, 2, 3, 4))
    mid, y = gs.Variable("mid", dtype=np.float32), gs.Variable("y", dtype=np.float32)
    nodes = [gs.Node("Transpose", attrs={"perm": [0, 2, 3, 1]}, inputs=[x], outputs=[mid]),
             gs.Node("Transpose", attrs={"perm": [0, 2, 3, 1]}, inputs=[mid], outputs=[y])]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[y])
    assert fusion.remove_inverse_transposes(graph) == 0
    assert len(graph.nodes) == 2
    assert fusion._composes_to_identity([0, 2, 3, 1], [0, 3, 1, 2])
    assert not fusion._composes_to_identity([0, 2, 3, 1], [0, 2, 3, 1])


def test_layernorm_chains_become_one_node_and_the_twin_matches(norm_graphs):
    net, x, original, plugin, twin, n_plugin, n_twin = norm_graphs
    assert n_plugin == n_twin == 2
    assert onnx_tools.node_counts(twin) == {"Gemm": 2, "LayerNormalization": 2}
    model = onnx.load(str(plugin))
    fused = [n for n in model.graph.node if n.op_type == fusion.PLUGIN_OP]
    assert len(fused) == 2 and all(n.domain == fusion.PLUGIN_DOMAIN for n in fused)
    assert onnx.helper.get_attribute_value(fused[0].attribute[0]) == pytest.approx(fusion.EPS)
    assert any(o.domain == fusion.PLUGIN_DOMAIN for o in model.opset_import)
    assert len(fused[0].input) == 3   # x, weight, bias: the learned affine travels with the op
    reference = net(x)
    assert onnx_tools.max_relative_error(fusion.ort_output(twin, x, "disabled"), reference) < 1e-5


def test_matcher_rejects_a_near_miss(tmp_path):
    class CubeNorm(torch.nn.Module):   # the exponent is 3: not a LayerNorm
        def forward(self, x):
            centred = x - x.mean(-1, keepdim=True)
            return centred / torch.sqrt(centred.pow(3).mean(-1, keepdim=True) + 1e-5) * torch.ones(8) + torch.zeros(8)

    path = onnx_tools.export(CubeNorm(), torch.randn(2, 8), tmp_path / "cube.onnx", dynamic_batch=False)
    assert fusion.fuse_layernorm(fusion.load_graph(path)) == 0


def test_decomposed_layernorm_equals_torch_layer_norm():
    x, weight, bias = fusion.layernorm_inputs(16, 64, device="cpu", dtype=torch.float32)
    expected = torch.nn.functional.layer_norm(x, (64,), weight, bias, fusion.EPS)
    assert torch.allclose(fusion.decomposed_layernorm(x, weight, bias), expected, atol=1e-5)
    candidates = fusion.layernorm_candidates(x, weight, bias, with_triton=False, with_compile=False)
    errors = fusion.verify_layernorm(candidates, x, weight, bias)
    assert set(errors) == {fusion.DECOMPOSED, fusion.TORCH_LAYER_NORM} and max(errors.values()) < 1e-5


def test_layernorm_bytes_and_rows():
    assert fusion.layernorm_bytes(4, 8, 2) == (2 * 4 * 8 + 2 * 8) * 2
    candidates = {fusion.DECOMPOSED: lambda: torch.ones(64).sum(), "other": lambda: torch.ones(8).sum()}
    runs = fusion.measure_candidates(candidates, device="cpu", measure_ms=5)
    rows = fusion.layernorm_rows(runs, nbytes=10**6, copy_gbps=100.0)
    assert rows[0]["speedup_vs_decomposed"] == 1.0
    assert rows[1]["pct_of_copy"] == pytest.approx(rows[1]["gb_per_s"])


def test_ort_levels_and_optimized_counts(conv_graphs):
    _, x, _, planted, fixed, *_ = conv_graphs
    # ORT's basic level cancels the inverse transposes by itself.
    assert fusion.ort_optimized_node_count(planted, "basic") == fusion.ort_optimized_node_count(fixed, "basic") == 9
    with pytest.raises(ValueError, match="level must be one of"):
        fusion.ort_session(fixed, "fast")
    rows, runs = fusion.ort_timing_rows({"fixed": fixed}, x, ("disabled",), passes=2, measure_ms=5)
    assert len(rows) == 1 and len(runs["fixed", "disabled"]) == 2


@pytest.mark.skipif(not fusion.has_triton(), reason="the Triton kernel needs a CUDA GPU and Triton")
def test_triton_layernorm_op_matches_and_compiles():
    x, weight, bias = fusion.layernorm_inputs(300, 1000, device="cuda", dtype=torch.float16)
    op = fusion.fused_layernorm_op()
    expected = torch.nn.functional.layer_norm(x.float(), (1000,), weight.float(), bias.float(), fusion.EPS)
    y = op(x, weight, bias, fusion.EPS)
    assert y.dtype == torch.float16 and onnx_tools.max_relative_error(y.float(), expected) < 2e-3
    compiled = torch.compile(lambda a: op(a, weight, bias, fusion.EPS), fullgraph=True)
    assert torch.equal(compiled(x), y)
