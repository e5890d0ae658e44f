"""One module (or small package) per lab: its experiments, its TensorRT study and its claims.

A notebook imports its own lab module under one name, ``from common.labs import lab01_batching as
lab``. A lab module imports the shared modules of :mod:`common` and :mod:`common.trt`, never another
lab module: what two labs share lives below them. Each exposes its claims as functions of its results
(``claims(results) -> report.LabReport``), unit-tested in ``tests/labs/``.
"""
