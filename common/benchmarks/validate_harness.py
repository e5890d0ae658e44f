"""Validate the timing harness on a GPU: kernel time against event time, against Triton's do_bench,
and what the kernel-time pass costs.

    python -m common.benchmarks.validate_harness results/harness.json

prints a short table and writes the figures as JSON to the given path:

- kernel_ms vs event_ms on a 4096^3 FP16 matmul (device-bound: within 5%), on a 20-layer 256-wide
  MLP at batch 8 in FP16 eager (launch-bound: busy < 0.5) and replayed as a CUDA graph (busy > 0.8),
  on a Triton kernel and a memory copy, and on two streams at once (union below the plain sum);
- ``bench.measure`` vs ``triton.testing.do_bench`` (event time) on lab 01's eager ResNet-50 (the zoo's,
  FP16, channels_last) at batch 1, 64 and 256;
- the kernel-time pass's cost: wall time of ``bench.measure`` with and without it, per case, the
  one-off CUPTI start-up, and whether event and host times measured after many profiled passes drift
  from those measured before any.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from common import bench, env
from common.files import write_text_atomic

MLP_LAYERS, MLP_WIDTH, MLP_BATCH = 20, 256, 8
RESNET_BATCHES = (1, 64, 256)


def matmul_case(n: int = 4096, dtype=torch.float16):
    """One n^3 product: a device-bound kernel."""
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    return lambda: a @ b


def mlp(layers: int = MLP_LAYERS, width: int = MLP_WIDTH) -> torch.nn.Module:
    """A deep, narrow MLP (Linear + ReLU per layer): tiny kernels, so eager PyTorch is launch-bound."""
    torch.manual_seed(0)
    blocks = [m for _ in range(layers) for m in (torch.nn.Linear(width, width), torch.nn.ReLU())]
    return torch.nn.Sequential(*blocks).to("cuda", torch.float16).eval()


def mlp_cases(batch: int = MLP_BATCH):
    """(eager fn, CUDA-graph replay fn) of the same MLP on the same input."""
    model = mlp()
    x = torch.randn(batch, MLP_WIDTH, device="cuda", dtype=torch.float16)
    side = torch.cuda.Stream()
    with torch.inference_mode():
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):   # warm-up on a side stream before capture, as PyTorch asks
            for _ in range(3):
                model(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(x)

    def eager():
        with torch.inference_mode():
            return model(x)

    return eager, graph.replay


def triton_case(n: int = 1 << 24):
    """A hand-written Triton kernel adding two vectors (None when Triton is missing)."""
    if not env.has_triton():
        return None
    import triton
    import triton.language as tl

    @triton.jit
    def add(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)

    x = torch.randn(n, device="cuda")
    y = torch.randn(n, device="cuda")
    out = torch.empty_like(x)
    return lambda: add[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)


def copy_case(nbytes: int = 256 << 20):
    """A host-to-device copy from pinned memory: a memcpy, not a kernel."""
    src = torch.empty(nbytes, dtype=torch.uint8).pin_memory()
    dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    return lambda: dst.copy_(src, non_blocking=True)


def two_streams_case(cycles: int = 200_000):
    """Two spinning kernels on two streams at once: their union is about half their sum."""
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]

    def run():
        here = torch.cuda.current_stream()
        for s in streams:
            s.wait_stream(here)
            with torch.cuda.stream(s):
                torch.cuda._sleep(cycles)
        for s in streams:
            here.wait_stream(s)

    return run


def resnet_runner():
    """Lab 01's eager ResNet-50: the zoo's, FP16, channels_last, cuDNN benchmark mode."""
    from common import models, runners

    return runners.TorchEagerRunner(models.build("resnet50", "full"),
                                    lambda b: models.example_input("resnet50", b, "full"), device="cuda",
                                    precision="fp16")


def _row(name: str, m: bench.Measurement) -> dict[str, Any]:
    return {"case": name, "event_ms": m.event_ms, "kernel_ms": m.kernel_ms, "kernel_sum_ms": m.kernel_sum_ms,
            "copy_ms": m.kernel.copy_ms if m.kernel else float("nan"),
            "activities_per_iter": m.kernel.activities_per_iter if m.kernel else 0,
            "host_ms": m.host_ms.median, "gpu_busy": m.gpu_busy, "regime": m.regime, "note": m.kernel_note}


def _timed(fn, **kwargs) -> tuple[bench.Measurement, float]:
    t0 = time.perf_counter()
    m = bench.measure(fn, **kwargs)
    return m, time.perf_counter() - t0


def validate(measure_ms: float = 500.0) -> dict:
    env.require("gpu")
    out: dict[str, Any] = {"machine": env.detect().machine, "torch": torch.__version__}
    eager, replay = mlp_cases()
    # Before any profiling in this process: the reference for drift after many kernel-time passes.
    before = bench.measure(eager, measure_ms=measure_ms, kernel_time=False)
    t0 = time.perf_counter()
    bench.measure_kernel_time(eager, torch.cuda.Stream(), 1)
    out["cupti_start_s"] = time.perf_counter() - t0

    cases = {"matmul 4096^3 fp16": matmul_case(), "MLP 20x256 batch 8 eager": eager,
             "MLP 20x256 batch 8 CUDA graph": replay, "pinned H2D copy 256 MiB": copy_case(),
             "two streams x _sleep": two_streams_case()}
    triton_fn = triton_case()
    if triton_fn is not None:
        cases["Triton vector add"] = triton_fn
    rows: list[dict[str, Any]] = []
    costs: list[dict[str, Any]] = []
    for name, fn in cases.items():
        fn()   # one call first: a JIT compile (Triton's) is charged to neither timing
        torch.cuda.synchronize()
        m, with_s = _timed(fn, measure_ms=measure_ms)
        _, without_s = _timed(fn, measure_ms=measure_ms, kernel_time=False)
        rows.append(_row(name, m))
        costs.append({"case": name, "with_kernel_time_s": with_s, "without_s": without_s,
                      "cost_pct": 100 * (with_s - without_s) / without_s})
    out["kernel_time"], out["kernel_time_cost"] = rows, costs
    by = {r["case"]: r for r in rows}
    mm = by["matmul 4096^3 fp16"]
    out["checks"] = {
        "matmul kernel within 5% of event": abs(mm["kernel_ms"] - mm["event_ms"]) <= 0.05 * mm["event_ms"],
        "MLP eager busy < 0.5": by["MLP 20x256 batch 8 eager"]["gpu_busy"] < 0.5,
        "MLP graph busy > 0.8": by["MLP 20x256 batch 8 CUDA graph"]["gpu_busy"] > 0.8,
        "two streams: union < 0.75 x sum": by["two streams x _sleep"]["kernel_ms"] < 0.75 * by["two streams x _sleep"]["kernel_sum_ms"],
        "copy counted as device work": by["pinned H2D copy 256 MiB"]["copy_ms"] > 0,
    }
    if triton_fn is not None:
        out["checks"]["Triton kernel counted"] = by["Triton vector add"]["activities_per_iter"] >= 1
    # The host-paced eager MLP again, inside a shared-session block: read there, and alike.
    shared_before = bench.kernel_pass_cost()["shared_measurements"]
    with bench.shared_kernel_session():
        shared = bench.measure(eager, measure_ms=measure_ms)
    own_ms = by["MLP 20x256 batch 8 eager"]["kernel_ms"]
    out["shared_session"] = {"own_kernel_ms": own_ms, "shared_kernel_ms": shared.kernel_ms,
                             "read_shared": bench.kernel_pass_cost()["shared_measurements"] > shared_before,
                             "note": shared.kernel_note}
    out["checks"]["host-paced MLP read in a shared session, within 10% of its own"] = (
        out["shared_session"]["read_shared"] and abs(shared.kernel_ms - own_ms) <= 0.1 * own_ms)

    resnet, runner = [], resnet_runner()
    for batch in RESNET_BATCHES:
        m = runner.measure(batch, measure_ms=measure_ms)
        row: dict[str, Any] = {"batch": batch, "bench_event_ms": m.event_ms, "kernel_ms": m.kernel_ms,
                               "regime": m.regime}
        if env.has_triton():
            from triton.testing import do_bench

            row["do_bench_ms"] = do_bench(runner.run, warmup=200, rep=int(measure_ms), return_mode="median")
            row["bench_vs_do_bench_pct"] = 100 * (m.event_ms / row["do_bench_ms"] - 1)
        resnet.append(row)
    out["resnet50"] = resnet
    del runner
    torch.cuda.empty_cache()

    after = bench.measure(eager, measure_ms=measure_ms, kernel_time=False)
    out["drift_after_profiling"] = {
        "event_ms_before": before.event_ms, "event_ms_after": after.event_ms,
        "host_ms_before": before.host_ms.median, "host_ms_after": after.host_ms.median,
        "event_change_pct": 100 * (after.event_ms / before.event_ms - 1),
        "host_change_pct": 100 * (after.host_ms.median / before.host_ms.median - 1),
    }
    out["median_cost_pct"] = statistics.median(c["cost_pct"] for c in costs)
    return out


def _print(out: dict) -> None:
    from common.sweeps import format_table

    print(f"{out['machine']}, PyTorch {out['torch']}; CUPTI start-up {out['cupti_start_s']:.2f} s")
    print(format_table(out["kernel_time"], ["case", "event_ms", "kernel_ms", "kernel_sum_ms", "copy_ms",
                                            "activities_per_iter", "host_ms"]))
    print(format_table(out["kernel_time_cost"], ["case", "with_kernel_time_s", "without_s", "cost_pct"]))
    print(format_table(out["resnet50"], [k for k in ("batch", "bench_event_ms", "do_bench_ms",
                                                     "bench_vs_do_bench_pct", "kernel_ms", "regime")
                                         if k in out["resnet50"][0]], kernel_columns=False))
    sh = out["shared_session"]
    print(f"eager MLP's kernel time: {sh['own_kernel_ms']:.4f} ms in its own session, {sh['shared_kernel_ms']:.4f} ms "
          f"in a shared one" + ("" if sh["read_shared"] else f" (not read there: {sh['note']})"))
    d = out["drift_after_profiling"]
    print(f"after the profiled passes, eager MLP: event {d['event_change_pct']:+.1f}%, host {d['host_change_pct']:+.1f}%")
    for check, ok in out["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.benchmarks.validate_harness", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="where to write the figures as JSON")
    parser.add_argument("--measure-ms", type=float, default=500.0, help="timed budget per measurement")
    args = parser.parse_args(argv)
    out = validate(args.measure_ms)
    _print(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0 if all(out["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
