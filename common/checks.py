"""Verify before timing: the course's one tolerance table and the check that refuses a wrong result.

Introduced in lab 01 (batching); every lab that times something checks it here first. A timing of a
wrong output means nothing, so a failed check raises :class:`VerificationError` ("do not time it")
instead of printing a cross and carrying on.

Two scopes per precision, both relative errors ‖out − ref‖ / ‖ref‖ against an FP32 (or float64)
reference of the same inputs:

- ``"op"``: one operation (a GEMM, a reduction, a fused kernel) on already rounded inputs — what is
  left is the accumulation and the output's rounding;
- ``"model"``: a whole network, where rounding compounds through every layer.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

import numpy as np

Scope = Literal["op", "model"]

#: The stated tolerances, per precision and scope (relative error against the FP32 reference).
TOLERANCE: dict[str, dict[str, float]] = {
    "fp32": {"op": 1e-5, "model": 1e-4},
    "tf32": {"op": 5e-3, "model": 2e-2},
    "fp16": {"op": 5e-3, "model": 2e-2},
    "bf16": {"op": 2e-2, "model": 6e-2},
    "fp8": {"op": 2e-2, "model": 0.15},
    "int8": {"op": 2e-2, "model": 0.15},
}

#: torch dtypes by their short name, for the precisions PyTorch computes in directly.
DTYPE_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float8_e4m3fn": "fp8", "int8": "int8"}


class VerificationError(AssertionError):
    """An output differs from its reference by more than its tolerance: its timing would mean nothing."""


def tolerance(precision: str, scope: Scope = "model") -> float:
    """The tolerance of `precision` ("fp32", "tf32", "fp16", "bf16", "fp8", "int8") for `scope`."""
    if precision not in TOLERANCE:
        raise ValueError(f"unknown precision {precision!r}: expected one of {sorted(TOLERANCE)}")
    if scope not in ("op", "model"):
        raise ValueError(f"scope must be 'op' or 'model', got {scope!r}")
    return TOLERANCE[precision][scope]


def precision_of(dtype: Any) -> str:
    """The course's name for a torch or numpy dtype (torch.float16 -> "fp16")."""
    name = str(dtype).rsplit(".", 1)[-1]
    if name not in DTYPE_NAMES:
        raise ValueError(f"no tolerance for dtype {dtype}: expected one of {sorted(DTYPE_NAMES)}")
    return DTYPE_NAMES[name]


def _as_float64(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):   # a torch tensor, on any device and in any dtype (bfloat16 has no numpy twin)
        x = x.detach().double().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def relative_error(out: Any, ref: Any) -> float:
    """‖out − ref‖ / ‖ref‖ in float64; infinite when `out` holds a NaN or an infinity."""
    out64, ref64 = _as_float64(out), _as_float64(ref)
    if out64.shape != ref64.shape:
        raise ValueError(f"shapes differ: {out64.shape} vs reference {ref64.shape}")
    if not np.all(np.isfinite(out64)):
        return float("inf")
    return float(np.linalg.norm(out64 - ref64) / max(np.linalg.norm(ref64), 1e-30))


def verify(out: Any, ref: Any, what: str, *, precision: str | None = None, scope: Scope = "model",
           tol: float | None = None, error: float | None = None) -> float:
    """Check `out` against `ref` before anything is timed; return the relative error.

    The tolerance is `tol` when given, else the table's for `precision` and `scope`. `error` is an
    error the caller already computed (a GEMM too large to copy to the host, say). Raises
    :class:`VerificationError` naming `what` when the error exceeds the tolerance.
    """
    if tol is None:
        if precision is None:
            raise ValueError("verify needs a precision (for the tolerance table) or an explicit tol")
        tol = tolerance(precision, scope)
    err = relative_error(out, ref) if error is None else float(error)
    if not err <= tol:
        raise VerificationError(f"{what}: relative error {err:.3g} against the reference exceeds {tol:g}"
                                + (f" ({precision}, {scope})" if precision else "") + ": do not time it")
    return err


def verify_errors(errors: Mapping[str, float], *, precision: str | None = None, scope: Scope = "model",
                  tol: float | None = None) -> bool:
    """:func:`verify` for errors already computed, by what they measure; True when every one passes.

    Introduced in lab 05 (fusion); lab 06 checks its reductions with it too."""
    for what, error in errors.items():
        verify(None, None, what, precision=precision, scope=scope, tol=tol, error=error)
    return True
