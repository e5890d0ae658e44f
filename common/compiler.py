"""torch.compile's one-off costs kept out of measurements: compiler warm-up and Inductor's caches.

Introduced in lab 04 (shape changes) and used by lab 10 (builder). The first compile in a process
pays for imports, Triton's start-up and worker processes; :func:`warm_up_compiler` pays that once so
no model or mode is charged for it. Inductor keeps compiled graphs in an on-disk cache:
:func:`fresh_inductor_cache` gives a block an empty one (a cold compile), :func:`cache_counters` says
what the cache served.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import torch

from . import bench


@contextlib.contextmanager
def fresh_inductor_cache() -> Iterator[None]:
    """An empty temporary Inductor/Triton cache folder for the block, deleted afterwards."""
    from torch._inductor import utils as inductor_utils

    fresh = getattr(inductor_utils, "fresh_cache", None) or getattr(inductor_utils, "fresh_inductor_cache", None)
    if fresh is None:
        raise RuntimeError(f"this PyTorch ({torch.__version__}) has neither torch._inductor.utils.fresh_cache nor "
                           "fresh_inductor_cache: measure a cold compile in a new process with its own "
                           "TORCHINDUCTOR_CACHE_DIR instead")
    with fresh():
        yield


def reset_compiler_state() -> None:
    """Forget every compiled graph (Dynamo) and Inductor's in-memory caches; the disk cache stays."""
    from torch._inductor import utils as inductor_utils

    torch._dynamo.reset()
    clear = getattr(inductor_utils, "clear_caches", None) or getattr(inductor_utils, "clear_inductor_caches", None)
    if clear is not None:
        clear()


def cache_counters() -> dict[str, int]:
    """Inductor's FX-graph cache and AOTAutograd's cache, hits and misses so far in this process."""
    from torch._dynamo.utils import counters

    return {"fx_hits": int(counters["inductor"]["fxgraph_cache_hit"]),
            "fx_misses": int(counters["inductor"]["fxgraph_cache_miss"]),
            "aot_hits": int(counters["aot_autograd"]["autograd_cache_hit"])}


def _tiny(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x * 2.0 + 1.0)


def warm_up_compiler(device: str, examples: Sequence[tuple[Callable[..., Any], torch.Tensor]] | None = None, *,
                     backend: str = "inductor", fresh_cache: bool = False) -> float:
    """Compile and run each (function or module, input) of `examples` once; return the seconds.

    The default is a one-line function, enough for the compiler's own start-up. Lab 10 passes tiny
    versions of its models with `fresh_cache=True` so the first lowering of their layer types is paid
    too, in a throwaway cache that leaves the real one cold.
    """
    examples = examples or [(_tiny, torch.ones(64))]
    cache = fresh_inductor_cache() if fresh_cache else contextlib.nullcontext()
    with bench.wall_timer() as t, cache, torch.inference_mode():
        for fn, x in examples:
            reset_compiler_state()
            if isinstance(fn, torch.nn.Module):
                fn = fn.to(device=device, dtype=x.dtype)
            torch.compile(fn, backend=backend)(x.to(device))
        if device == "cuda":
            torch.cuda.synchronize()
    reset_compiler_state()
    return t.seconds
