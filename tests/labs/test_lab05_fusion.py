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

from common import bench, ceilings, checks, env, report
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
    runs = lab.measure_candidates(candidates, device="cpu", passes=2, warmup_ms=1, measure_ms=5)
    assert lab.timed_on(runs) == "event"   # a CPU: no kernel time
    ceiling = ceilings.Ceilings(machine="test", device="cpu", torch="", copy_gbps=1e6, copy_bytes=1,
                                matmul_tflops={"fp32": 1.0}, matmul_shape=(1, 1, 1))
    rows = lab.layernorm_rows(runs, nbytes=1000, ceilings=ceiling)
    assert rows[0]["speedup_vs_decomposed"] == 1.0 and rows[0]["regime"] == bench.CPU_REGIME
    assert rows[1]["pct_of_copy"] == pytest.approx(100 * rows[1]["gb_per_s"] / 1e6)
    assert np.isnan(lab.layernorm_rows(runs, nbytes=1000)[0]["pct_of_copy"])   # no ceiling known


def test_layernorm_rows_use_kernel_time_and_never_exceed_the_copy_ceiling():
    runs = {lab.DECOMPOSED: measurements("d", [1.0, 1.0], kernel_ms=0.5), "fast": measurements("f", [0.2, 0.2], kernel_ms=0.1)}
    ceiling = ceilings.Ceilings(machine="test", device="cuda", torch="", copy_gbps=9.0, copy_bytes=1,
                                matmul_tflops={"fp16": 1.0}, matmul_shape=(1, 1, 1))
    rows = {r["kernel"]: r for r in lab.layernorm_rows(runs, nbytes=10**6, ceilings=ceiling)}
    assert rows["fast"]["timed_on"] == "kernel" and rows["fast"]["gb_per_s"] == pytest.approx(10.0)   # 1 MB / 0.1 ms
    assert rows["fast"]["pct_of_copy"] == 100.0 and ceiling.lifted == {"copy": 9.0}   # raised, not above 100
    assert rows["fast"]["speedup_vs_decomposed"] == pytest.approx(5.0)
    assert lab.versus_decomposed(runs)["fast"].on == "kernel"


def test_ort_levels_and_optimized_counts(conv_graphs):
    _, x, _, planted, fixed, *_ = conv_graphs
    # ORT's basic level cancels the inverse transposes by itself.
    assert lab.ort_optimized_node_count(planted, "basic") == lab.ort_optimized_node_count(fixed, "basic") == 9
    rows, runs = lab.ort_timing_rows({"fixed": fixed}, x, ("disabled",), passes=2, measure_ms=5, warmup_ms=1)
    assert len(rows) == 1 and len(runs["fixed", "disabled"]) == 2 and rows[0]["regime"] == bench.CPU_REGIME


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
    versus = lab.versus_decomposed(lab.measure_candidates(candidates, device="cpu", passes=2, warmup_ms=1, measure_ms=5))
    assert list(versus) == [lab.TORCH_LAYER_NORM] and versus[lab.TORCH_LAYER_NORM].label_a == lab.DECOMPOSED


# -- the claims, on synthetic results --------------------------------------------------------------

def measurements(name: str, medians_ms, *, kernel_ms: float | None = None, kernels: float = 10,
                 device: str = "cuda") -> list[bench.Measurement]:
    """One Measurement per pass median; kernel time a fixed share of it when `kernel_ms` is given."""
    out = []
    for median in medians_ms:
        stats = bench.Stats.of([median])
        kernel = None if kernel_ms is None else bench.KernelTime(
            union_ms=kernel_ms * median / medians_ms[0], sum_ms=kernel_ms, copy_ms=0.0,
            activities_per_iter=kernels, iterations=5)
        out.append(bench.Measurement(name, "test", device, 1, stats, stats, median, 10, 1.0, "test", kernel=kernel))
    return out


def comparison(speedup: float, spread_pct: float, on: str = "event") -> bench.Comparison:
    """B `speedup` times faster than A over five passes whose medians spread by `spread_pct`."""
    wobble = [1 + spread_pct / 100 * f for f in (0.0, 0.5, 1.0, 0.25, 0.75)]
    return bench.Comparison("a", "b", median_a_ms=speedup, median_b_ms=1.0, spread_a_pct=spread_pct,
                            spread_b_pct=spread_pct, passes_a_ms=tuple(speedup * w for w in wobble),
                            passes_b_ms=tuple(wobble[::-1]), on=on)


def statuses(lab_report: report.LabReport) -> dict[str, tuple[str, str, str]]:
    return {c.claim: (c.status, c.measured, c.why) for c in lab_report.claims}


def trt_row(graph: str, onnx_nodes: int, engine_layers: int, matches: bool = True) -> dict:
    return {"graph": graph, "onnx_nodes": onnx_nodes, "engine_layers": engine_layers, "matches": matches,
            "shuffle_layers": 0, "profiled_ms": 0.1}


def trt_runs(planted_ms: float, rewritten_ms: float) -> dict[str, list[bench.Measurement]]:
    return {"with transpose pairs": measurements("p", [planted_ms] * 3, kernel_ms=planted_ms),
            "rewritten": measurements("r", [rewritten_ms * f for f in (1.0, 1.001, 0.999)], kernel_ms=rewritten_ms)}


def test_tensorrt_claims_hold_fail_and_say_why_they_did_not_run():
    conv = [trt_row("with transpose pairs", 40, 9), trt_row("rewritten", 24, 9)]
    norm = [trt_row("decomposed", 48, 12), trt_row("fused (plugin op)", 8, 8)]
    held = statuses(lab.tensorrt_claims(conv, norm, tensorrt_installed=True, conv_runs=trt_runs(1.0, 1.0)))
    assert held[lab.TRT_CLAIMS["fuses"]] == (report.HOLDS, "9 layers", "24 ONNX nodes")
    assert held[lab.TRT_CLAIMS["pairs"]][:2] == (report.HOLDS, "9 layers")
    assert held[lab.TRT_CLAIMS["pairs_time"]][0] == report.HOLDS
    assert "judged on kernel time" in held[lab.TRT_CLAIMS["pairs_time"]][2]
    assert held[lab.TRT_CLAIMS["plugin"]] == (report.HOLDS, "1", "")
    conv[0]["engine_layers"], conv[1]["engine_layers"], norm[1]["matches"] = 25, 24, False
    failed = statuses(lab.tensorrt_claims(conv, norm, tensorrt_installed=True, conv_runs=trt_runs(1.3, 1.0)))
    assert failed[lab.TRT_CLAIMS["fuses"]][:2] == (report.FAILS, "24 layers")
    assert failed[lab.TRT_CLAIMS["pairs"]][:2] == (report.FAILS, "25 layers")
    assert failed[lab.TRT_CLAIMS["pairs_time"]][0] == report.FAILS
    assert failed[lab.TRT_CLAIMS["plugin"]][:2] == (report.FAILS, "0") and failed[lab.TRT_CLAIMS["plugin"]][2]
    for installed, reason in ((False, "TensorRT not installed"), (True, "no GPU/Triton")):
        missing = statuses(lab.tensorrt_claims(None, None, tensorrt_installed=installed))
        assert set(missing) == set(lab.TRT_CLAIMS.values())
        assert all(s == (report.NOT_APPLICABLE, "-", f"needs TensorRT and Triton on an NVIDIA GPU: {reason}")
                   for s in missing.values())


def test_trtexec_commands_name_every_engine_and_say_what_trtexec_cannot_express():
    commands = lab.trtexec_commands({"conv": (2, 32, 56, 56), "norm": (1024, 512)})
    files = [file for graphs in lab.TRT_GRAPHS.values() for file in graphs.values()]
    assert len(commands) == len(files) and all(f"--onnx={file}" in c for file, c in zip(files, commands))
    assert all("--dumpProfile" in c and "--dumpLayerInfo" in c for c in commands)
    assert "--shapes=input:2x32x56x56" in commands[0] and "--shapes=input:1024x512" in commands[-1]
    assert "not expressible in trtexec: Python plugins" in commands[-1]
    assert "#" not in commands[2]   # the decomposed norm graph needs no plugin


def compile_rows(planted_compiled_kernels: float) -> list[dict]:
    return [{"graph": lab.PLANTED, "mode": lab.EAGER_MODE, "kernels_per_iter": 41.0},
            {"graph": lab.REWRITTEN, "mode": lab.EAGER_MODE, "kernels_per_iter": 25.0},
            {"graph": lab.PLANTED, "mode": lab.COMPILE_MODE, "kernels_per_iter": planted_compiled_kernels},
            {"graph": lab.REWRITTEN, "mode": lab.COMPILE_MODE, "kernels_per_iter": 16.0}]


def fusion_results(*, fast: bool, gpu: bool, spread: float | None = None) -> lab.FusionResults:
    """A run where every claim holds (`fast`) or none does, on a GPU with Triton or on a CPU; `spread`
    widens the noise so that the ratio claims become inconclusive."""
    speedup, noise = (1.4, 5.0) if fast else (0.7, 5.0)
    if spread is not None:
        speedup, noise = 1.1, spread
    on = "kernel" if gpu else "event"
    candidates = [lab.DECOMPOSED, lab.TORCH_LAYER_NORM] + ([lab.TRITON, lab.COMPILED] if gpu else [])
    ln_rows = [{"kernel": name, "gb_per_s": 2900.0 if fast else 1500.0, "pct_of_copy": 96.5 if fast else 49.9}
               for name in candidates]
    ln_speedup = (9.76 if fast else 0.8) if spread is None else 1.5
    return lab.FusionResults(
        conv_depth=8, planted=8, removed=8 if fast else 7, conv_match=True,
        conv_verdicts={"disabled": comparison(speedup, noise), "all": comparison(0.95, 3.0)},
        ort_nodes={"with transpose pairs": {"basic": 24, "all": 40}, "rewritten": {"basic": 24 if fast else 23, "all": 40}},
        norm_depth=4, fused_count=4, twin_count=4, norm_match=fast,
        norm_errors={"decomposed ONNX vs PyTorch": 3.6e-7, "twin ONNX vs PyTorch": 4.3e-7},
        norm_verdicts={"disabled": comparison(speedup, noise), "all": comparison(1.0, 50.0)},
        ln_shape=(16384, 8192) if gpu else (256, 512), ln_precision="fp16" if gpu else "fp32",
        ln_versus={name: comparison(ln_speedup, 0.1 if spread is None else spread, on) for name in candidates[1:]},
        ln_rows=ln_rows, copy_gbps=3006.0 if gpu else None,
        compile_rows=compile_rows(16.0 if fast else 32.0) if gpu else None,
        compile_verdicts={lab.EAGER_MODE: comparison(speedup, noise, "kernel"),
                          lab.COMPILE_MODE: comparison(1.0, 1.0, "kernel")} if gpu else None)


def test_claims_hold_on_a_gpu_with_triton():
    held = statuses(lab.claims(fusion_results(fast=True, gpu=True), has_gpu=True, has_triton=True))
    c = lab.CLAIMS
    assert held[c["rewrite"]] == (report.HOLDS, "8 pairs", "8 planted")
    assert held[c["ort_off"]][:2] == (report.HOLDS, "1.40x [1.35x, 1.45x]")
    assert "there is no kernel time" in held[c["ort_off"]][2] and "judged on event time over 5 passes" in held[c["ort_off"]][2]
    assert held[c["ort_basic"]] == (report.HOLDS, "24 nodes", "rewritten: 24; timing at 'all' 0.95x")
    assert held[c["eager_pairs"]][0] == report.HOLDS and "41 with the pairs, 25 without" in held[c["eager_pairs"]][2]
    assert "judged on kernel time" in held[c["eager_pairs"]][2]
    assert held[c["compile_pairs"]][:2] == (report.HOLDS, "16 kernels")
    layernorm = "every hand-written LayerNorm (4) becomes one node and its twin matches within 1e-4"
    assert held[layernorm] == (report.HOLDS, "4 fused", "max error 4.3e-07")
    assert held[c["ort_ln_off"]][0] == report.HOLDS
    assert held[c["speedup"]][0] == report.HOLDS and held[c["speedup"]][1].startswith("9.76x")
    assert "judged on kernel time" in held[c["speedup"]][2]
    assert held[c["bandwidth"]][:2] == (report.HOLDS, "96%") and held[c["bandwidth"]][2].startswith("2900 of 3006 GB/s")
    assert held[c["cpu_eager"]] == (report.NOT_APPLICABLE, "-",
                                    "the CPU counterpart; on this GPU the fused kernel is measured instead")
    assert len(held) == 10


def test_claims_do_not_hold_when_the_measurements_say_no():
    lab_report = lab.claims(fusion_results(fast=False, gpu=True), has_gpu=True, has_triton=True)
    failed = statuses(lab_report)
    c = lab.CLAIMS
    layernorm = "every hand-written LayerNorm (4) becomes one node and its twin matches within 1e-4"
    for key in ("rewrite", "ort_off", "ort_basic", "eager_pairs", "compile_pairs", "ort_ln_off", "speedup", "bandwidth"):
        assert failed[c[key]][0] == report.FAILS, key
    assert failed[layernorm][0] == report.FAILS   # all four fused, but the twin did not match
    assert failed[c["rewrite"]][1] == "7 pairs" and failed[c["bandwidth"]][1] == "50%"
    assert "Inductor kept copies" in failed[c["compile_pairs"]][2]
    assert lab_report.unexplained() == []


def test_claims_inside_the_noise_are_inconclusive_and_say_why():
    lab_report = lab.claims(fusion_results(fast=True, gpu=True, spread=60.0), has_gpu=True, has_triton=True)
    noisy = statuses(lab_report)
    c = lab.CLAIMS
    for key in ("ort_off", "ort_ln_off", "eager_pairs", "speedup"):
        assert noisy[c[key]][0] == report.INCONCLUSIVE, key
        assert "straddles" in noisy[c[key]][2]
    assert lab_report.unexplained() == []


def test_claims_on_a_gpu_without_triton_and_on_a_cpu():
    c = lab.CLAIMS
    no_triton = statuses(lab.claims(fusion_results(fast=True, gpu=False), has_gpu=True, has_triton=False))
    for key in ("speedup", "bandwidth"):
        assert no_triton[c[key]] == (report.NOT_APPLICABLE, "-", "needs an NVIDIA GPU with Triton")
    assert no_triton[c["cpu_eager"]][0] == report.NOT_APPLICABLE
    cpu = statuses(lab.claims(fusion_results(fast=True, gpu=False), has_gpu=False, has_triton=False))
    assert cpu[c["cpu_eager"]][0] == report.HOLDS and cpu[c["cpu_eager"]][2].startswith("256 x 512; on a CPU")
    assert cpu[c["speedup"]][0] == report.NOT_APPLICABLE
    for key in ("eager_pairs", "compile_pairs"):
        assert cpu[c[key]] == (report.NOT_APPLICABLE, "-", "needs a CUDA GPU: CUPTI's kernel count and kernel time")
    slow_cpu = statuses(lab.claims(fusion_results(fast=False, gpu=False), has_gpu=False, has_triton=False))
    assert slow_cpu[c["cpu_eager"]][0] == report.FAILS and slow_cpu[c["cpu_eager"]][1].startswith("0.80x")


def test_claims_add_to_the_report_passed_in_after_the_tensorrt_claims():
    lab_report = lab.tensorrt_claims(None, None, tensorrt_installed=False)
    assert lab.claims(fusion_results(fast=True, gpu=False), has_gpu=False, has_triton=False,
                      lab_report=lab_report) is lab_report
    assert [c.claim for c in lab_report.claims][:4] == list(lab.TRT_CLAIMS.values()) and len(lab_report.claims) == 14


def test_kernels_per_iteration_reads_cuptis_count():
    assert lab.kernels_per_iteration(measurements("x", [1.0, 1.0, 1.0], kernel_ms=0.5, kernels=40)) == 40
    assert np.isnan(lab.kernels_per_iteration(measurements("x", [1.0], device="cpu")))


def test_the_planted_pytorch_net_has_the_same_weights_and_computes_the_same():
    x = torch.randn(1, 4, 6, 6)
    plain, planted = (lab.seeded(lab.ConvResidualNet(4, 2, transpose_pairs=t)) for t in (False, True))
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), planted.state_dict().values()))
    assert torch.equal(plain(x), planted(x))


def test_polygraphy_inspects_the_rewritten_graphs_without_tensorrt(conv_graphs):
    _, _, _, planted, fixed, *_ = conv_graphs
    text = onnx_tools.polygraphy_inspect(planted)
    assert "---- 15 Node(s) ----" in text and "---- 9 Node(s) ----" in onnx_tools.polygraphy_inspect(fixed)
    assert "[Op: Transpose]" in onnx_tools.polygraphy_inspect(planted, show_layers=True)
    assert onnx_tools.polygraphy_inspect_command(planted) == "polygraphy inspect model planted.onnx --model-type=onnx"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compile study needs a CUDA GPU and CUPTI")
def test_compile_study_counts_the_copies_of_the_planted_pairs_in_eager():
    x = torch.randn(2, 8, 16, 16, device="cuda", dtype=torch.float16)
    candidates = lab.compile_candidates(8, 2, x)
    reference = lab.seeded(lab.ConvResidualNet(8, 2)).cuda()(x.float())
    errors = lab.verify_candidates(candidates, x, reference)
    assert len(errors) == 4
    rows, runs = lab.compile_study(candidates, x, passes=2, warmup_ms=5, measure_ms=10)
    kernels = {(r["graph"], r["mode"]): r["kernels_per_iter"] for r in rows}
    assert kernels[lab.PLANTED, lab.EAGER_MODE] >= kernels[lab.REWRITTEN, lab.EAGER_MODE] + 4   # two copies per block
    assert set(lab.rewrite_verdicts(runs)) == {lab.EAGER_MODE, lab.COMPILE_MODE}
