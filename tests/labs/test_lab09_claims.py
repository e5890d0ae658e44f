"""Lab 09 (2:4 structured sparsity): every claim and branch of common.labs.lab09_sparsity's claims,
driven by synthetic results: holds, does not hold, not applicable here (with its reason), sparse GPU /
CPU / TensorRT."""

import dataclasses

import pytest

from common import bench, report
from common.labs import lab09_sparsity as lab
from common.trt.sparsity import LayerSparsity, SparsityLog

HOLDS, FAILS, NA = report.HOLDS, report.FAILS, report.NOT_APPLICABLE
LARGEST, SMALLEST, WIDE = "16384x16384x16384", "1024x1024x1024", 256
NARROW_GEMMS = ("DigitsCNN(32) features.3 (64x288x8624)", "DigitsCNN(32) features.7 (128x576x2156)")
WIDE_GEMMS = ("DigitsCNN(256) features.3 (512x2304x16384)", "DigitsCNN(256) features.7 (1024x4608x4096)")


def cmp(speedup, spread=1.0, a="base dense, W @ X", b="g cuSPARSELt, F.linear(x, W)"):
    """A comparison whose B runs `speedup` times faster than A, with `spread` % run-to-run spread."""
    return bench.Comparison(a, b, median_a_ms=speedup, median_b_ms=1.0, spread_a_pct=spread, spread_b_pct=spread)


def layer_study(narrow=(0.6, 0.8), wide=(1.05, 1.4), refused=None):
    best = {g: cmp(s) for g, s in zip(NARROW_GEMMS, narrow)} | {g: cmp(s, 2.0) for g, s in zip(WIDE_GEMMS, wide)}
    flops = {NARROW_GEMMS[0]: 1, NARROW_GEMMS[1]: 2, WIDE_GEMMS[0]: 30, WIDE_GEMMS[1]: 20}
    return lab.LayerStudy(cases=[], refused=refused or {"DigitsCNN(32)": {}, f"DigitsCNN({WIDE})": {}},
                          conv_errors={}, runs={}, speed=[], best=best, flops={g: flops[g] for g in best})


def trt_studies(eligible=("conv2", "conv3"), picked=("conv3",), kernels=(False, True), reported=True,
                speedup=1.3):
    def engine(names, chosen):
        return {"build_s": 1.0, "log": SparsityLog(tuple(names), tuple(chosen), reported),
                "layers": [LayerSparsity(n, "CaskConvolution", True, "sm90_sparse_sptensor" if k else "sm90_dense")
                           for n, k in zip(("conv2", "conv3"), kernels)]}
    return {"DigitsCNN(32)": {"batch": 539, "engines": {"sparse_weights": engine(eligible, picked)}},
            f"DigitsCNN({WIDE})": {"batch": 4096, "engines": {"sparse_weights": engine(eligible, picked)},
                                   "comparison": cmp(speedup, 2.0)}}


@pytest.fixture
def results():
    """A run on a GPU with sparse tensor cores and TensorRT where every claim holds."""
    return lab.Results(
        accuracy=[{"stage": "dense", "accuracy_pct": 98.70, "n": 539, "std_error_pts": 0.49},
                  {"stage": "2:4 magnitude, not fine-tuned", "accuracy_pct": 96.85, "n": 539, "std_error_pts": 0.75},
                  {"stage": "SparseGPT, not fine-tuned", "accuracy_pct": 97.0, "n": 539, "std_error_pts": 0.73},
                  {"stage": "2:4 magnitude + 3 epochs fine-tuning", "accuracy_pct": 98.52, "n": 539,
                   "std_error_pts": 0.52}],
        ft_epochs=3, pruned_names=["features.3", "features.7"], magnitude_broken=0, after_broken=0,
        after_pruned=["features.3", "features.7"], sgpt_broken=0, modelopt="0.47.0", has_sparse=True,
        sparse_runs=True, largest=LARGEST, smallest=SMALLEST,
        zeros_cmp=cmp(1.01, 2.0, b="4096x4096x4096 dense, 2:4-pruned weight (50% zeros)"), wide=WIDE, wide_batch=4096,
        headline={LARGEST: cmp(1.4, b=f"{LARGEST} cuSPARSELt, F.linear(x, W)"), SMALLEST: cmp(0.7),
                  "768x3072x8192": cmp(0.8)},
        backend_status={"cuSPARSELt": None, "CUTLASS": None}, layers=layer_study(), trt_studies=trt_studies())


def by_key(lab_report, r):
    """Claims by their key in claim_texts."""
    texts = lab.claim_texts(r.ft_epochs, r.largest, r.smallest, r.wide)
    found = {c.claim: c for c in lab_report.claims}
    return {key: found[text] for key, text in texts.items() if text in found}


def run(section, r):
    return by_key(section(r, report.LabReport("test")), r)


# -- the whole table ------------------------------------------------------------------------------

def test_claims_lists_every_claim_in_the_notebook_order(results):
    lab_report = lab.claims(results)
    assert lab_report.lab == "09_sparsity"
    assert [c.claim for c in lab_report.claims] == list(lab.claim_texts(3, LARGEST, SMALLEST, WIDE).values())
    assert {c.status for c in lab_report.claims} == {HOLDS}


def test_claims_add_to_the_report_passed_in(results):
    lab_report = report.LabReport("09_sparsity")
    assert lab.claims(results, lab_report) is lab_report and len(lab_report.claims) == 15


def test_claim_texts_name_the_epochs_sizes_and_width():
    texts = lab.claim_texts(5, "a", "b", 128)
    assert texts["recover"].startswith("5 epochs of fine-tuning")
    assert texts["largest"].endswith("(a)") and texts["smallest"].endswith("(b)")
    assert "DigitsCNN(128)" in texts["layers_wide"] and "DigitsCNN(128)" in texts["trt_speed"]


# -- pruning ---------------------------------------------------------------------------------------

def test_pruning_claims_hold(results):
    got = run(lab.pruning_claims, results)
    assert list(got) == ["pattern", "cost", "recover", "kept", "sparsegpt"]
    assert all(c.status == HOLDS for c in got.values())
    assert got["pattern"].measured == "0 broken groups" and got["pattern"].why == "layers features.3, features.7"
    assert got["cost"].measured == "1.85 points"
    assert got["cost"].why == "98.70% -> 96.85% (n = 539, SE 0.75)"
    assert got["recover"].measured == "-0.18 points vs dense" and got["recover"].why == "98.52% vs 98.70% (n = 539)"
    assert got["kept"].measured == "0 broken groups" and got["kept"].why == ""
    assert got["sparsegpt"].why == "its groups run in memory order (along the kernel); ModelOpt 0.47.0"


def test_pruning_claims_fail(results):
    accuracy = [dict(results.accuracy[0]), dict(results.accuracy[1], accuracy_pct=98.4),
                dict(results.accuracy[-1], accuracy_pct=98.1)]
    r = dataclasses.replace(results, accuracy=accuracy, magnitude_broken=3, after_broken=0,
                            after_pruned=["features.7"], sgpt_broken=144)
    got = run(lab.pruning_claims, r)
    assert all(c.status == FAILS for c in got.values())
    assert got["pattern"].measured == "3 broken groups"
    assert got["cost"].measured == "0.30 points"                       # within one standard error: no cost shown
    assert got["recover"].measured == "-0.60 points vs dense"
    assert got["kept"].measured == "0 broken groups"                   # no group broken, but a layer lost
    assert got["sparsegpt"].measured == "144 broken groups"


def test_pruning_claims_at_their_edges(results):
    accuracy = [dict(results.accuracy[0]), dict(results.accuracy[1], accuracy_pct=98.2, std_error_pts=0.5),
                dict(results.accuracy[-1], accuracy_pct=98.2)]
    got = run(lab.pruning_claims, dataclasses.replace(results, accuracy=accuracy, pruned_names=[], after_pruned=[]))
    assert got["pattern"].status == FAILS                              # nothing pruned is not a 2:4 model
    assert got["cost"].status == FAILS                                 # a drop of exactly one SE is not larger
    assert got["recover"].status == HOLDS and got["recover"].measured == "-0.50 points vs dense"


def test_kept_fails_when_a_group_broke(results):
    got = run(lab.pruning_claims, dataclasses.replace(results, after_broken=2))
    assert got["kept"].status == FAILS and got["kept"].measured == "2 broken groups"


# -- speed ---------------------------------------------------------------------------------------

def test_speed_claims_hold_on_a_sparse_gpu(results):
    got = run(lab.speed_claims, results)
    assert list(got) == ["largest", "smallest", "narrow_n", "cutlass", "layers_narrow", "layers_wide", "zeros"]
    assert all(c.status == HOLDS for c in got.values())
    assert got["largest"].measured == "1.40x"
    assert got["largest"].why == "best sparse cuSPARSELt, F.linear(x, W) vs best dense; spread 1.0%"
    assert got["smallest"].measured == "0.70x" and got["smallest"].why == "best of each; spread 1.0%"
    assert got["narrow_n"].measured == "0.80x"
    assert got["cutlass"].measured == "1" and got["cutlass"].why == "runs"
    assert got["layers_narrow"].measured == "0.80x (best layer)"
    assert got["layers_narrow"].why == "best sparse vs best dense, per layer"
    assert got["layers_wide"].measured == "1.05x"                      # the layer with the most FLOPs
    assert got["layers_wide"].why == f"{WIDE_GEMMS[0]}, batch 4096; spread 2.0%"
    assert got["zeros"].measured == "1.01x" and got["zeros"].why == "4096x4096x4096, FP16; spread 2.0%"


def test_speed_claims_fail_on_a_sparse_gpu(results):
    r = dataclasses.replace(
        results, headline={LARGEST: cmp(1.14, b=f"{LARGEST} CUTLASS, W @ X"), SMALLEST: cmp(1.2),
                           "768x3072x8192": cmp(0.995)},
        backend_status={"cuSPARSELt": None, "CUTLASS": "RuntimeError: CUTLASS kernels need compute capability 8.x"},
        layers=layer_study(narrow=(1.3, 0.9), wide=(1.005, 1.5)), zeros_cmp=cmp(1.2, 2.0, b="g dense, x"))
    got = run(lab.speed_claims, r)
    assert all(c.status == FAILS for c in got.values()), {k: c.status for k, c in got.items() if c.status != FAILS}
    assert got["largest"].measured == "1.14x"
    assert got["narrow_n"].measured == "0.99x"                         # slower, but within the spread
    assert got["cutlass"].measured == "0" and got["cutlass"].why.startswith("RuntimeError: CUTLASS")
    assert got["layers_narrow"].measured == "1.30x (best layer)"
    assert got["layers_wide"].measured == "1.00x"
    assert got["zeros"].measured == "1.20x"


def test_largest_needs_a_significant_gain_too(results):
    got = run(lab.speed_claims, dataclasses.replace(results, headline=dict(results.headline, **{
        LARGEST: cmp(1.15, spread=20.0, b="x cuSPARSELt, W @ X")})))
    assert got["largest"].status == FAILS and got["largest"].why.endswith("spread 20.0%")


def test_zeros_within_the_spread_hold_beyond_five_percent(results):
    got = run(lab.speed_claims, dataclasses.replace(results, zeros_cmp=cmp(1.07, 8.0, b="g dense, x")))
    assert got["zeros"].status == HOLDS
    got = run(lab.speed_claims, dataclasses.replace(results, zeros_cmp=cmp(0.96, 1.0, b="g dense, x")))
    assert got["zeros"].status == HOLDS                                # 4% slower, beyond the spread: within 5%


def test_narrow_n_is_not_applicable_outside_the_sweep(results):
    headline = {k: v for k, v in results.headline.items() if k != "768x3072x8192"}
    got = run(lab.speed_claims, dataclasses.replace(results, headline=headline))
    assert got["narrow_n"].status == NA and got["narrow_n"].why == "not in this scale's sweep"


def test_layer_claims_not_applicable_when_the_backends_refused_the_layers(results):
    refused = {"DigitsCNN(32)": {"DigitsCNN(32) features.3 (64x288x8624) cuSPARSELt": "RuntimeError: K"},
               f"DigitsCNN({WIDE})": {"DigitsCNN(256) features.3 (...) cuSPARSELt": "RuntimeError: N"}}
    study = lab.LayerStudy(cases=[], refused=refused, conv_errors={}, runs={})
    got = run(lab.speed_claims, dataclasses.replace(results, layers=study))
    assert got["layers_narrow"].status == NA
    assert got["layers_narrow"].why == f"the sparse backends refused these shapes: {refused['DigitsCNN(32)']}"
    assert got["layers_wide"].status == NA
    assert got["layers_wide"].why == f"the sparse backends refused these shapes: {refused['DigitsCNN(256)']}"


def test_sparse_runs_need_the_layer_study(results):
    with pytest.raises(ValueError, match="layer study"):
        lab.speed_claims(dataclasses.replace(results, layers=None), report.LabReport("test"))


@pytest.mark.parametrize("has_sparse, why", [
    (True, "no semi-structured backend runs on this GPU"),
    (False, "semi-structured sparse kernels need an NVIDIA GPU of compute capability 8.0+")])
def test_speed_claims_without_sparse_kernels(results, has_sparse, why):
    r = dataclasses.replace(results, has_sparse=has_sparse, sparse_runs=False, headline={}, backend_status={},
                            layers=None, zeros_cmp=cmp(0.99, 3.0, b="1024x1024x1024 dense, 2:4-pruned weight"))
    got = run(lab.speed_claims, r)
    for key in ("largest", "smallest", "narrow_n", "cutlass", "layers_narrow", "layers_wide"):
        assert got[key].status == NA and got[key].why == why
    assert got["zeros"].status == HOLDS and got["zeros"].why == "1024x1024x1024, FP32 CPU; spread 3.0%"


# -- TensorRT ------------------------------------------------------------------------------------

def test_tensorrt_claims_hold(results):
    got = run(lab.tensorrt_claims, results)
    assert list(got) == ["trt_eligible", "trt_picked", "trt_speed"]
    assert all(c.status == HOLDS for c in got.values())
    assert got["trt_eligible"].measured == "2 layers"
    assert got["trt_eligible"].why == "eligible for sparse math: 2 layer(s) ['conv2', '"
    assert got["trt_picked"].measured == "1 layers"
    assert got["trt_speed"].measured == "1.30x" and got["trt_speed"].why == "batch 4096; spread 2.0%"


def test_tensorrt_claims_fail(results):
    got = run(lab.tensorrt_claims, dataclasses.replace(
        results, trt_studies=trt_studies(eligible=("conv3",), picked=(), kernels=(False, False), speedup=0.9)))
    assert all(c.status == FAILS for c in got.values())
    assert got["trt_eligible"].measured == "1 layers" and got["trt_picked"].measured == "0 layers"
    assert got["trt_speed"].measured == "0.90x"


def test_a_sparse_kernel_counts_when_the_log_lists_no_pick(results):
    got = run(lab.tensorrt_claims, dataclasses.replace(results, trt_studies=trt_studies(picked=(), kernels=(True, True))))
    assert got["trt_picked"].status == HOLDS and got["trt_picked"].measured == "2 layers"


def test_a_log_without_sparsity_lines_is_not_eligible(results):
    got = run(lab.tensorrt_claims, dataclasses.replace(results, trt_studies=trt_studies(reported=False)))
    assert got["trt_eligible"].status == FAILS
    assert got["trt_eligible"].why == "the build log has no '(Sparsity)' messages (was "


@pytest.mark.parametrize("sparse_runs, why", [
    (True, "needs TensorRT (not installed); the same layers were measured as PyTorch GEMMs"),
    (False, "needs TensorRT and a GPU with 2:4 sparse tensor cores")])
def test_tensorrt_claims_without_tensorrt(results, sparse_runs, why):
    got = run(lab.tensorrt_claims, dataclasses.replace(results, sparse_runs=sparse_runs, trt_studies={}))
    assert [c.status for c in got.values()] == [NA, NA, NA] and {c.why for c in got.values()} == {why}
