"""Lab 09 (2:4 structured sparsity): every claim and branch of common.labs.lab09_sparsity's claims,
driven by synthetic results: holds, does not hold, inconclusive, not applicable here (with its reason),
sparse GPU / CPU / TensorRT."""

import dataclasses

import pytest

from common import bench, report
from claim_keys import claims_by_key
from common.labs import lab09_sparsity as lab
from common.trt.sparsity import LayerSparsity, SparsityLog

HOLDS, FAILS, NA, INCONCLUSIVE = report.HOLDS, report.FAILS, report.NOT_APPLICABLE, report.INCONCLUSIVE
LARGEST, SMALLEST, WIDE = "16384x16384x16384", "1024x1024x1024", 256
GFLOP = {SMALLEST: 2.147, "768x3072x8192": 38.65, "4096x4096x4096": 137.4, LARGEST: 8796.1}
NARROW_GEMMS = ("DigitsCNN(32) features.3 (64x288x8624)", "DigitsCNN(32) features.7 (128x576x2156)")
WIDE_GEMMS = ("DigitsCNN(256) features.3 (512x2304x16384)", "DigitsCNN(256) features.7 (1024x4608x4096)")


def cmp(speedup, spread=1.0, a="base dense, W @ X", b="g cuSPARSELt, F.linear(x, W)", on="kernel", b_ms=1.0):
    """A comparison over five passes whose B runs `speedup` times faster than A (B's median `b_ms`), A's pass
    medians spread over +-`spread`/2 %: its 95% interval lies within about that of the speedup."""
    passes_a = tuple(speedup * b_ms * (1 + spread / 200 * d) for d in (-1, -0.5, 0, 0.5, 1))
    return bench.Comparison(a, b, median_a_ms=speedup * b_ms, median_b_ms=b_ms, spread_a_pct=spread, spread_b_pct=0.0,
                            passes_a_ms=passes_a, passes_b_ms=(b_ms,) * 5, on=on)


def per_call(ms, kernel_ms=1.0, spread=1.0, b="g cuSPARSELt, F.linear(x, W)"):
    """The per-call (event) comparison of the same cases, B taking `ms` per call (spread over +-`spread`/2 %)."""
    passes_b = tuple(ms * (1 + spread / 200 * d) for d in (-1, -0.5, 0, 0.5, 1))
    return bench.Comparison("base dense, W @ X", b, median_a_ms=0.5, median_b_ms=ms, spread_a_pct=0.0,
                            spread_b_pct=spread, passes_a_ms=(0.5,) * 5, passes_b_ms=passes_b, on="event")


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
                  "768x3072x8192": cmp(0.8), "4096x4096x4096": cmp(1.1)},
        per_call={SMALLEST: per_call(40.0)}, gflop=GFLOP,
        backend_status={"cuSPARSELt": None, "CUTLASS": None}, layers=layer_study(), trt_studies=trt_studies())


def by_key(lab_report, r):
    """Claims by their key in claim_texts."""
    return claims_by_key(lab_report, lab.claim_texts(r.ft_epochs, r.largest, r.smallest, r.wide))


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
    assert lab.claims(results, lab_report) is lab_report and len(lab_report.claims) == 17


def test_each_section_adds_to_the_report_passed_in(results):
    lab_report = report.LabReport("09_sparsity")
    assert lab.pruning_claims(results, lab_report) is lab_report and len(lab_report.claims) == 5
    assert lab.speed_claims(results, lab_report) is lab_report and len(lab_report.claims) == 14
    assert lab.tensorrt_claims(results, lab_report) is lab_report and len(lab_report.claims) == 17


def test_claim_texts_name_the_epochs_sizes_and_width():
    texts = lab.claim_texts(5, "a", "b", 128)
    assert texts["recover"].startswith("5 epochs of fine-tuning")
    assert texts["largest"].endswith("(a; kernel time)") and texts["smallest"].endswith("(b; kernel time)")
    assert "crossover" in texts["crossover"]
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
    assert list(got) == ["largest", "smallest", "narrow_n", "crossover", "per_call", "cutlass", "layers_narrow",
                         "layers_wide", "zeros"]
    assert all(c.status == HOLDS for c in got.values()), {k: (c.status, c.why) for k, c in got.items()}
    assert got["largest"].measured.startswith("1.40x [")
    assert got["largest"].why == ("best sparse cuSPARSELt, F.linear(x, W) vs best dense; "
                                  "judged on kernel time over 5 passes")
    assert got["smallest"].measured.startswith("0.70x [")
    assert got["smallest"].why == "best of each; judged on kernel time over 5 passes"
    assert got["narrow_n"].measured.startswith("0.80x [")
    assert got["crossover"].measured == "137 GFLOP" and got["crossover"].value == pytest.approx(137.4)
    assert got["crossover"].why == ("4096x4096x4096 1.10x; loses at 39 GFLOP (768x3072x8192, 0.80x); "
                                    "best sparse vs best dense per GEMM")
    assert got["per_call"].measured.startswith("40.0x [") and got["per_call"].value == pytest.approx(40.0)
    assert got["per_call"].why == "cuSPARSELt, F.linear(x, W): 40 ms per call, its kernels 1 ms"
    assert got["cutlass"].measured == "1" and got["cutlass"].why == "runs"
    assert got["layers_narrow"].measured.startswith("0.80x [")                 # the layer that gains most
    assert got["layers_narrow"].why.startswith(f"the layer that gains most: {NARROW_GEMMS[1]}")
    assert got["layers_wide"].measured.startswith("1.05x [")                   # the layer with the most FLOPs
    assert got["layers_wide"].why == f"{WIDE_GEMMS[0]}, batch 4096; judged on kernel time over 5 passes"
    assert got["zeros"].measured.startswith("1.01x [")
    assert got["zeros"].why == "4096x4096x4096, FP16; judged on kernel time over 5 passes"


def test_the_crossover_is_the_claim_the_advisor_reads(results):
    """common.advise looks for a 09_sparsity claim whose text holds "crossover" and takes its value (GFLOP)."""
    (claim,) = [c for c in lab.claims(results).claims if "crossover" in c.claim.lower()]
    assert claim.status in (HOLDS, FAILS) and claim.value == pytest.approx(137.4)


def test_speed_claims_fail_on_a_sparse_gpu(results):
    r = dataclasses.replace(
        results, headline={LARGEST: cmp(1.10, b=f"{LARGEST} CUTLASS, W @ X"), SMALLEST: cmp(1.2),
                           "768x3072x8192": cmp(1.05), "4096x4096x4096": cmp(1.1)},
        per_call={SMALLEST: per_call(1.5, b="x cuSPARSELt, W @ X")},
        backend_status={"cuSPARSELt": None, "CUTLASS": "RuntimeError: CUTLASS kernels need compute capability 8.x"},
        layers=layer_study(narrow=(1.3, 0.9), wide=(0.9, 1.5)), zeros_cmp=cmp(1.2, 2.0, b="g dense, x"))
    got = run(lab.speed_claims, r)
    failing = [k for k in got if k != "crossover"]
    assert all(got[k].status == FAILS for k in failing), {k: got[k].status for k in failing if got[k].status != FAILS}
    assert got["largest"].why.startswith("95% interval 1.09x-1.11x lies below 1.15x")
    assert got["narrow_n"].measured.startswith("1.05x [")
    assert got["per_call"].measured.startswith("1.5x [")                       # the kernels fill the call
    assert got["cutlass"].measured == "0" and got["cutlass"].why.startswith("RuntimeError: CUTLASS")
    assert got["layers_narrow"].measured.startswith("1.30x [")
    assert got["layers_wide"].measured.startswith("0.90x [")
    assert got["zeros"].measured.startswith("1.20x [")
    assert got["crossover"].status == HOLDS and got["crossover"].measured == "2 GFLOP"
    assert "wins at every size of the sweep" in got["crossover"].why


def test_no_crossover_when_sparse_loses_at_the_largest_gemm(results):
    headline = dict(results.headline, **{LARGEST: cmp(0.95, b=f"{LARGEST} cuSPARSELt, W @ X")})
    got = run(lab.speed_claims, dataclasses.replace(results, headline=headline))
    assert got["crossover"].status == FAILS and got["crossover"].measured == "none up to 8,796 GFLOP"
    assert got["crossover"].value == pytest.approx(8796.1)
    assert got["crossover"].why == (f"sparse loses at the largest GEMM ({LARGEST}, 0.95x): the crossover lies "
                                    "beyond the sweep")


def test_a_win_below_a_loss_is_not_the_crossover(results):
    headline = dict(results.headline, **{"768x3072x8192": cmp(1.2), "4096x4096x4096": cmp(0.9)})
    got = run(lab.speed_claims, dataclasses.replace(results, headline=headline))
    assert got["crossover"].measured == "8,796 GFLOP"
    assert "loses at 137 GFLOP (4096x4096x4096, 0.90x)" in got["crossover"].why


def test_speed_claims_inconclusive_inside_the_noise(results):
    r = dataclasses.replace(
        results, headline={LARGEST: cmp(1.15, spread=20.0, b="x cuSPARSELt, W @ X"), SMALLEST: cmp(1.0, spread=10.0),
                           "768x3072x8192": cmp(1.0, spread=10.0), "4096x4096x4096": cmp(1.1)},
        per_call={SMALLEST: per_call(2.0, spread=20.0)},
        layers=layer_study(narrow=(0.6, 1.0), wide=(1.0, 1.4)), zeros_cmp=cmp(1.05, 10.0, b="g dense, x"))
    got = run(lab.speed_claims, r)
    for key in ("largest", "smallest", "narrow_n", "per_call", "layers_narrow", "layers_wide", "zeros"):
        assert got[key].status == INCONCLUSIVE, (key, got[key].status, got[key].why)
        assert "straddles" in got[key].why and "noise is larger than the effect" in got[key].why


def test_per_call_needs_kernel_time(results):
    headline = dict(results.headline, **{SMALLEST: cmp(0.7, on="event")})
    got = run(lab.speed_claims, dataclasses.replace(results, headline=headline))
    assert got["per_call"].status == NA and got["per_call"].why == "kernel time was not measured in this run (CUPTI unavailable)"
    assert got["smallest"].why.endswith("judged on event time over 5 passes")
    got = run(lab.speed_claims, dataclasses.replace(results, per_call={}))
    assert got["per_call"].status == NA


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
    r = dataclasses.replace(results, has_sparse=has_sparse, sparse_runs=False, headline={}, per_call={}, gflop={},
                            backend_status={}, layers=None,
                            zeros_cmp=cmp(0.99, 3.0, b="1024x1024x1024 dense, 2:4-pruned weight", on="event"))
    got = run(lab.speed_claims, r)
    for key in lab.SPEED_KEYS:
        assert got[key].status == NA and got[key].why == why
    assert got["zeros"].status == HOLDS
    assert got["zeros"].why == "1024x1024x1024, FP32 CPU; judged on event time over 5 passes"


# -- TensorRT ------------------------------------------------------------------------------------

def test_tensorrt_claims_hold(results):
    got = run(lab.tensorrt_claims, results)
    assert list(got) == ["trt_eligible", "trt_picked", "trt_speed"]
    assert all(c.status == HOLDS for c in got.values())
    assert got["trt_eligible"].measured == "2 layers"
    assert got["trt_eligible"].why == "eligible for sparse math: 2 layer(s) ['conv2', 'conv3']; sparse kernel picked: 1 ['conv3']"
    assert got["trt_picked"].measured == "1 layers"
    assert got["trt_speed"].measured.startswith("1.30x [")
    assert got["trt_speed"].why == "batch 4096; judged on kernel time over 5 passes"


def test_tensorrt_speed_inconclusive_inside_the_noise(results):
    studies = trt_studies()
    studies[f"DigitsCNN({WIDE})"]["comparison"] = cmp(1.01, 10.0)
    got = run(lab.tensorrt_claims, dataclasses.replace(results, trt_studies=studies))
    assert got["trt_speed"].status == INCONCLUSIVE and "straddles 1.00x" in got["trt_speed"].why


def test_tensorrt_claims_fail(results):
    got = run(lab.tensorrt_claims, dataclasses.replace(
        results, trt_studies=trt_studies(eligible=("conv3",), picked=(), kernels=(False, False), speedup=0.9)))
    assert all(c.status == FAILS for c in got.values())
    assert got["trt_eligible"].measured == "1 layers" and got["trt_picked"].measured == "0 layers"
    assert got["trt_speed"].measured.startswith("0.90x [")


def test_a_sparse_kernel_counts_when_the_log_lists_no_pick(results):
    got = run(lab.tensorrt_claims, dataclasses.replace(results, trt_studies=trt_studies(picked=(), kernels=(True, True))))
    assert got["trt_picked"].status == HOLDS and got["trt_picked"].measured == "2 layers"


def test_a_log_without_sparsity_lines_is_not_eligible(results):
    got = run(lab.tensorrt_claims, dataclasses.replace(results, trt_studies=trt_studies(reported=False)))
    assert got["trt_eligible"].status == FAILS
    assert got["trt_eligible"].why.startswith("the build log has no '(Sparsity)' messages (was the engine built")


@pytest.mark.parametrize("sparse_runs, why", [
    (True, "needs TensorRT (not installed); the same layers were measured as PyTorch GEMMs"),
    (False, "needs TensorRT and a GPU with 2:4 sparse tensor cores")])
def test_tensorrt_claims_without_tensorrt(results, sparse_runs, why):
    got = run(lab.tensorrt_claims, dataclasses.replace(results, sparse_runs=sparse_runs, trt_studies={}))
    assert [c.status for c in got.values()] == [NA, NA, NA] and {c.why for c in got.values()} == {why}


def test_the_crossover_says_where_sparse_also_wins_below_it(results):
    headline = dict(results.headline, **{SMALLEST: cmp(1.26, b=f"{SMALLEST} cuSPARSELt, W @ X")})
    got = run(lab.speed_claims, dataclasses.replace(results, headline=headline))
    assert got["crossover"].status == HOLDS and got["crossover"].measured == "137 GFLOP"
    assert f"below it sparse also wins at {SMALLEST} 1.26x: shape matters, not size alone" in got["crossover"].why
