"""Lab 05's module: the graph rewrites (planted transpose pairs, the LayerNorm matcher) checked with
ONNX Runtime on CPU; the Triton kernel and its torch custom op on a GPU; the claims on synthetic
results, through every branch."""

import ast
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch

from common import bench, checks, env, report
from common import onnx as onnx_tools
from common.labs import lab05_fusion as lab
from common.labs.lab05_fusion import graphs
from common.trt import plugins


@pytest.fixture(scope="module")
def conv_graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    net = lab.seeded(lab.ConvResidualNet(4, 3))
    x = torch.randn(1, 4, 8, 8)
    original = onnx_tools.export(net, x, root / "conv.onnx", dynamic_batch=False)
    planted, n_planted = lab.rewrite(original, root / "planted.onnx", lab.plant_transpose_pairs)
    fixed, n_removed = lab.rewrite(planted, root / "fixed.onnx", lab.remove_inverse_transposes)
    return net, x, original, planted, fixed, n_planted, n_removed


@pytest.fixture(scope="module")
def norm_graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("norm")
    net = lab.seeded(lab.NormNet(32, 2))
    x = torch.randn(5, 32)
    original = onnx_tools.export(net, x, root / "norm.onnx", dynamic_batch=False)
    plugin, n_plugin = lab.rewrite(original, root / "plugin.onnx", lab.fuse_layernorm)
    twin, n_twin = lab.rewrite(original, root / "twin.onnx", lab.fuse_layernorm, standard=True)
    return net, x, original, plugin, twin, n_plugin, n_twin


def test_planted_pairs_are_removed_and_the_graph_computes_the_same(conv_graphs):
    net, x, original, planted, fixed, n_planted, n_removed = conv_graphs
    assert n_planted == n_removed == 3
    assert onnx_tools.node_counts(planted)["Transpose"] == 6
    assert onnx_tools.node_counts(fixed) == onnx_tools.node_counts(original) == {"Conv": 3, "Add": 3, "Relu": 3}
    reference = net(x)
    for path in (planted, fixed):
        assert onnx_tools.max_relative_error(lab.ort_output(path, x, "disabled"), reference) < 1e-5


def test_transposes_that_do_not_cancel_are_kept():
    x = gs.Variable("x", dtype=np.float32, shape=(1, 2, 3, 4))
    mid, y = gs.Variable("mid", dtype=np.float32), gs.Variable("y", dtype=np.float32)
    nodes = [gs.Node("Transpose", attrs={"perm": [0, 2, 3, 1]}, inputs=[x], outputs=[mid]),
             gs.Node("Transpose", attrs={"perm": [0, 2, 3, 1]}, inputs=[mid], outputs=[y])]
    graph = gs.Graph(nodes=nodes, inputs=[x], outputs=[y])
    assert lab.remove_inverse_transposes(graph) == 0
    assert len(graph.nodes) == 2
    assert graphs._composes_to_identity([0, 2, 3, 1], [0, 3, 1, 2])
    assert not graphs._composes_to_identity([0, 2, 3, 1], [0, 2, 3, 1])


def test_layernorm_chains_become_one_node_and_the_twin_matches(norm_graphs):
    net, x, original, plugin, twin, n_plugin, n_twin = norm_graphs
    assert n_plugin == n_twin == 2
    assert onnx_tools.node_counts(twin) == {"Gemm": 2, "LayerNormalization": 2}
    model = onnx.load(str(plugin))
    fused = [n for n in model.graph.node if n.op_type == lab.PLUGIN_OP]
    assert len(fused) == 2 and all(n.domain == lab.PLUGIN_DOMAIN for n in fused)
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in fused[0].attribute}
    assert attributes["epsilon"] == pytest.approx(lab.EPS)
    assert any(o.domain == lab.PLUGIN_DOMAIN for o in model.opset_import)
    assert len(fused[0].input) == 3   # x, weight, bias: the learned affine travels with the op
    reference = net(x)
    assert onnx_tools.max_relative_error(lab.ort_output(twin, x, "disabled"), reference) < 1e-5


def test_matcher_rejects_a_near_miss(tmp_path):
    class CubeNorm(torch.nn.Module):   # the exponent is 3: not a LayerNorm
        def forward(self, x):
            centred = x - x.mean(-1, keepdim=True)
            return centred / torch.sqrt(centred.pow(3).mean(-1, keepdim=True) + 1e-5) * torch.ones(8) + torch.zeros(8)

    path = onnx_tools.export(CubeNorm(), torch.randn(2, 8), tmp_path / "cube.onnx", dynamic_batch=False)
    assert lab.fuse_layernorm(lab.load_graph(path)) == 0


def test_decomposed_layernorm_equals_torch_layer_norm():
    x, weight, bias = lab.layernorm_inputs(16, 64, device="cpu", dtype=torch.float32)
    expected = torch.nn.functional.layer_norm(x, (64,), weight, bias, lab.EPS)
    assert torch.allclose(lab.decomposed_layernorm(x, weight, bias), expected, atol=1e-5)
    candidates = lab.layernorm_candidates(x, weight, bias, with_triton=False, with_compile=False)
    errors = lab.verify_layernorm(candidates, x, weight, bias)
    assert set(errors) == {lab.DECOMPOSED, lab.TORCH_LAYER_NORM} and max(errors.values()) < 1e-5


def test_layernorm_bytes_and_rows():
    assert lab.layernorm_bytes(4, 8, 2) == (2 * 4 * 8 + 2 * 8) * 2
    candidates = {lab.DECOMPOSED: lambda: torch.ones(64).sum(), "other": lambda: torch.ones(8).sum()}
    runs = lab.measure_candidates(candidates, device="cpu", measure_ms=5)
    rows = lab.layernorm_rows(runs, nbytes=10**6, copy_gbps=100.0)
    assert rows[0]["speedup_vs_decomposed"] == 1.0
    assert rows[1]["pct_of_copy"] == pytest.approx(rows[1]["gb_per_s"])


def test_ort_levels_and_optimized_counts(conv_graphs):
    _, x, _, planted, fixed, *_ = conv_graphs
    # ORT's basic level cancels the inverse transposes by itself.
    assert lab.ort_optimized_node_count(planted, "basic") == lab.ort_optimized_node_count(fixed, "basic") == 9
    rows, runs = lab.ort_timing_rows({"fixed": fixed}, x, ("disabled",), passes=2, measure_ms=5)
    assert len(rows) == 1 and len(runs["fixed", "disabled"]) == 2


@pytest.mark.skipif(not env.has_triton(), reason="the Triton kernel needs a CUDA GPU and Triton")
def test_triton_layernorm_op_matches_and_compiles():
    x, weight, bias = lab.layernorm_inputs(300, 1000, device="cuda", dtype=torch.float16)
    op = lab.fused_layernorm_op()
    expected = torch.nn.functional.layer_norm(x.float(), (1000,), weight.float(), bias.float(), lab.EPS)
    y = op(x, weight, bias, lab.EPS)
    assert y.dtype == torch.float16 and onnx_tools.max_relative_error(y.float(), expected) < 2e-3
    compiled = torch.compile(lambda a: op(a, weight, bias, lab.EPS), fullgraph=True)
    assert torch.equal(compiled(x), y)


def test_plugin_node_carries_its_namespace_for_tensorrt_before_10_10(norm_graphs):
    # TensorRT before 10.10 reads a plugin's namespace from this attribute, not from the node's domain.
    plugin = norm_graphs[3]
    fused = [n for n in onnx.load(str(plugin)).graph.node if n.op_type == lab.PLUGIN_OP]
    for node in fused:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes["plugin_namespace"] == lab.PLUGIN_DOMAIN.encode()
    assert plugins.PLUGIN_ID == f"{lab.PLUGIN_DOMAIN}::{lab.PLUGIN_OP}"   # the node names the registered plugin


def test_plugin_registration_imports_no_lab_module_and_nothing_heavy_at_import():
    source = Path(plugins.__file__).read_text(encoding="utf-8")
    top_level = [node for node in ast.parse(source).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    imported = {alias.name for node in top_level for alias in node.names} | {
        node.module for node in top_level if isinstance(node, ast.ImportFrom) and node.module}
    assert not {"tensorrt", "triton", "torch"} & imported
    every = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)]
    assert not any("labs" in (node.module or "") for node in every)
    assert any(node.module is None and node.level == 2 and node.names[0].name == "kernels" for node in every)


def test_the_lab_verifies_its_errors_before_timing():
    # The notebook checks its graphs (fp32, "model": 1e-4, as the prose says) and its LayerNorms ("op").
    assert checks.verify_errors({"a": 1e-5, "b": 9e-5}, precision="fp32", scope="model")
    with pytest.raises(checks.VerificationError, match="b: relative error 0.0002 .*do not time it"):
        checks.verify_errors({"a": 1e-5, "b": 2e-4}, precision="fp32", scope="model")
    with pytest.raises(checks.VerificationError):   # one LayerNorm is one operation: the tighter "op" tolerance
        checks.verify_errors({"fused": 6e-3}, precision="fp16", scope="op")


def test_versus_decomposed_compares_every_other_candidate():
    candidates = {lab.DECOMPOSED: lambda: torch.ones(64).sum(), lab.TORCH_LAYER_NORM: lambda: torch.ones(8).sum()}
    versus = lab.versus_decomposed(lab.measure_candidates(candidates, device="cpu", measure_ms=5))
    assert list(versus) == [lab.TORCH_LAYER_NORM] and versus[lab.TORCH_LAYER_NORM].label_a == lab.DECOMPOSED


# -- the claims, on synthetic results --------------------------------------------------------------

def comparison(speedup: float, spread_pct: float) -> bench.Comparison:
    return bench.Comparison("a", "b", median_a_ms=speedup, median_b_ms=1.0, spread_a_pct=spread_pct,
                            spread_b_pct=spread_pct / 2)


def statuses(lab_report: report.LabReport) -> dict[str, tuple[str, str, str]]:
    return {c.claim: (c.status, c.measured, c.why) for c in lab_report.claims}


def trt_row(graph: str, onnx_nodes: int, engine_layers: int, matches: bool = True) -> dict:
    return {"graph": graph, "onnx_nodes": onnx_nodes, "engine_layers": engine_layers, "matches": matches}


def test_tensorrt_claims_hold_fail_and_say_why_they_did_not_run():
    conv = [trt_row("with transpose pairs", 40, 25), trt_row("rewritten", 24, 9)]
    norm = [trt_row("decomposed", 48, 12), trt_row("fused (plugin op)", 8, 8)]
    held = statuses(lab.tensorrt_claims(conv, norm, tensorrt_installed=True))
    assert held[lab.TRT_CLAIMS["fuses"]] == (report.HOLDS, "9 layers", "24 ONNX nodes")
    assert held[lab.TRT_CLAIMS["plugin"]] == (report.HOLDS, "1", "")
    conv[1]["engine_layers"], norm[1]["matches"] = 24, False
    failed = statuses(lab.tensorrt_claims(conv, norm, tensorrt_installed=True))
    assert failed[lab.TRT_CLAIMS["fuses"]][:2] == (report.FAILS, "24 layers")
    assert failed[lab.TRT_CLAIMS["plugin"]][:2] == (report.FAILS, "0")
    for installed, reason in ((False, "TensorRT not installed"), (True, "no GPU/Triton")):
        missing = statuses(lab.tensorrt_claims(None, None, tensorrt_installed=installed))
        assert set(missing) == set(lab.TRT_CLAIMS.values())
        assert all(s == (report.NOT_APPLICABLE, "-", f"needs TensorRT and Triton on an NVIDIA GPU: {reason}")
                   for s in missing.values())


def fusion_results(*, fast: bool, gpu: bool) -> lab.FusionResults:
    """A run where every claim holds (`fast`) or none does, on a GPU with Triton or on a CPU."""
    speedup, spread = (1.4, 5.0) if fast else (1.1, 25.0)
    candidates = [lab.DECOMPOSED, lab.TORCH_LAYER_NORM] + ([lab.TRITON, lab.COMPILED] if gpu else [])
    ln_rows = [{"kernel": name, "gb_per_s": 2900.0 if fast else 1500.0, "pct_of_copy": 96.5 if fast else 49.9}
               for name in candidates]
    return lab.FusionResults(
        conv_depth=8, planted=8, removed=8 if fast else 7, conv_match=True,
        conv_verdicts={"disabled": comparison(speedup, spread), "all": comparison(0.95, 3.0)},
        ort_nodes={"with transpose pairs": {"basic": 24, "all": 40}, "rewritten": {"basic": 24 if fast else 23, "all": 40}},
        norm_depth=4, fused_count=4, twin_count=4, norm_match=fast,
        norm_errors={"decomposed ONNX vs PyTorch": 3.6e-7, "twin ONNX vs PyTorch": 4.3e-7},
        norm_verdicts={"disabled": comparison(speedup, spread), "all": comparison(1.0, 50.0)},
        ln_shape=(16384, 8192) if gpu else (256, 512), ln_precision="fp16" if gpu else "fp32",
        ln_versus={name: comparison(9.76 if fast else 1.2, 0.1 if fast else 30.0) for name in candidates[1:]},
        ln_rows=ln_rows, copy_gbps=3006.0 if gpu else None)


def test_claims_hold_on_a_gpu_with_triton():
    held = statuses(lab.claims(fusion_results(fast=True, gpu=True), has_gpu=True, has_triton=True))
    c = lab.CLAIMS
    assert held[c["rewrite"]] == (report.HOLDS, "8 pairs", "8 planted")
    assert held[c["ort_off"]] == (report.HOLDS, "1.40x", "run-to-run spread 5.0%")
    assert held[c["ort_basic"]] == (report.HOLDS, "24 nodes", "rewritten: 24; timing at 'all' 0.95x")
    layernorm = "every hand-written LayerNorm (4) becomes one node and its twin matches within 1e-4"
    assert held[layernorm] == (report.HOLDS, "4 fused", "max error 4.3e-07")
    assert held[c["ort_ln_off"]] == (report.HOLDS, "1.40x", "run-to-run spread 5.0%")
    assert held[c["speedup"]] == (report.HOLDS, "9.76x", "16384 x 8192 fp16; spread 0.1%")
    assert held[c["bandwidth"]] == (report.HOLDS, "96%", "2900 of 3006 GB/s")
    assert held[c["cpu_eager"]] == (report.NOT_APPLICABLE, "-",
                                    "the CPU counterpart; on this GPU the fused kernel is measured instead")
    assert len(held) == 8


def test_claims_do_not_hold_when_the_measurements_say_no():
    failed = statuses(lab.claims(fusion_results(fast=False, gpu=True), has_gpu=True, has_triton=True))
    c = lab.CLAIMS
    layernorm = "every hand-written LayerNorm (4) becomes one node and its twin matches within 1e-4"
    for key in ("rewrite", "ort_off", "ort_basic", "ort_ln_off", "speedup", "bandwidth"):
        assert failed[c[key]][0] == report.FAILS, key
    assert failed[layernorm][0] == report.FAILS   # all four fused, but the twin did not match
    assert failed[c["rewrite"]][1] == "7 pairs" and failed[c["bandwidth"]][1] == "50%"
    assert failed[c["speedup"]][1:] == ("1.20x", "16384 x 8192 fp16; spread 30.0%")   # 20% within a 30% spread


def test_claims_on_a_gpu_without_triton_and_on_a_cpu():
    c = lab.CLAIMS
    no_triton = statuses(lab.claims(fusion_results(fast=True, gpu=False), has_gpu=True, has_triton=False))
    for key in ("speedup", "bandwidth"):
        assert no_triton[c[key]] == (report.NOT_APPLICABLE, "-", "needs an NVIDIA GPU with Triton")
    assert no_triton[c["cpu_eager"]][0] == report.NOT_APPLICABLE
    cpu = statuses(lab.claims(fusion_results(fast=True, gpu=False), has_gpu=False, has_triton=False))
    assert cpu[c["cpu_eager"]] == (report.HOLDS, "9.76x", "256 x 512; spread 0.1%")
    assert cpu[c["speedup"]][0] == report.NOT_APPLICABLE
    slow_cpu = statuses(lab.claims(fusion_results(fast=False, gpu=False), has_gpu=False, has_triton=False))
    assert slow_cpu[c["cpu_eager"]] == (report.FAILS, "1.20x", "256 x 512; spread 30.0%")


def test_claims_add_to_the_report_passed_in_after_the_tensorrt_claims():
    lab_report = lab.tensorrt_claims(None, None, tensorrt_installed=False)
    assert lab.claims(fusion_results(fast=True, gpu=False), has_gpu=False, has_triton=False,
                      lab_report=lab_report) is lab_report
    assert [c.claim for c in lab_report.claims][:2] == list(lab.TRT_CLAIMS.values()) and len(lab_report.claims) == 10
