"""Lab 12's module: the planted network and its clean twin, and the claims on the advisor's findings."""

import onnx

from common import report
from common.advise import Figures, Finding, advise
from common.labs import lab12_your_model as lab


def _finding(lab_name, check, severity="advice"):
    return Finding(lab_name, check, ["n"], "detail", severity, "effect", "evidence")


def _all_planted():
    return [_finding(lab_name, check) for lab_name, check in lab.PLANTED.values()]


def test_claims_hold_when_every_problem_is_found_and_the_twin_is_clean():
    lab_report = lab.claims(lab.Results(planted=_all_planted(), clean=[]))
    statuses = {c.claim: (c.status, c.measured) for c in lab_report.claims}
    assert statuses["the advisor finds every planted problem"] == (report.HOLDS, f"{len(lab.PLANTED)} of {len(lab.PLANTED)}")
    assert statuses["the clean twin raises none of the planted problems"] == (report.HOLDS, "0 false alarms")


def test_a_missed_problem_and_a_false_alarm_do_not_hold_and_say_which():
    planted = [f for f in _all_planted() if f.check != "misaligned-matmul"]
    clean = [_finding("05_fusion", "transpose-pair", severity="info")]
    claims = {c.claim: c for c in lab.claims(lab.Results(planted=planted, clean=clean)).claims}
    missed = claims["the advisor finds every planted problem"]
    assert missed.status == report.FAILS and "misaligned Linear" in missed.why
    alarm = claims["the clean twin raises none of the planted problems"]
    assert alarm.status == report.FAILS and alarm.why == "transpose and its inverse" and alarm.measured == "1 false alarms"


def test_info_findings_do_not_count_except_the_graph_facts_planted_as_info():
    assert lab.found([_finding("07_matmul_tensor_cores", "misaligned-matmul", "info")]) == set()
    assert lab.found([_finding("06_reduce_shuffle", "reduce-non-trailing", "info")]) == {
        ("06_reduce_shuffle", "reduce-non-trailing")}


def test_the_planted_network_has_its_problems_and_the_twin_has_none(tmp_path):
    planted, clean = lab.export_planted(tmp_path, clean=False), lab.export_planted(tmp_path, clean=True)
    ops = [n.op_type for n in onnx.load(str(planted)).graph.node]
    assert ops[:2] == ["Transpose", "Transpose"] and "LayerNormalization" not in ops
    assert "LayerNormalization" in [n.op_type for n in onnx.load(str(clean)).graph.node]
    results = lab.Results(advise(planted, figures=Figures()), advise(clean, figures=Figures()))
    assert all(c.status == report.HOLDS for c in lab.claims(results).claims)
    assert set(lab.findings_by_lab(results.planted)) >= {key[0] for key in lab.PLANTED.values()}
