"""Test helper: a lab report's claims by the keys of the lab's claim_texts()."""


def claims_by_key(lab_report, texts):
    """{key: Claim} for every text of `texts` (key -> claim text) that `lab_report` holds."""
    found = {c.claim: c for c in lab_report.claims}
    return {key: found[text] for key, text in texts.items() if text in found}
