"""Lab 02 (streams): independent work run at the same time, on CUDA streams or CPU threads, and timed.

The lab imports this package as one module (``from common.labs import lab02_streams as lab``); its parts:

- :mod:`.timing`: :class:`ForkJoin` (worker streams forked from a main stream and joined back, so events
  on the main stream time the whole region) and its CPU counterpart :class:`ThreadFork`;
  :func:`compare_concurrent`, :func:`overlap_study` and the overlap arithmetic, and
  :func:`default_stream_host_cost` (what a call costs the host on the legacy default stream);
- :mod:`.experiments`: the four-branch network, independent zoo models run :func:`on_streams` or
  :func:`in_threads`, :func:`blocking_stream` and :func:`spin_kernel`, the copies and
  :func:`copy_bandwidth_study`, and :func:`timeline_plot`;
- :mod:`.tensorrt_study`: auxiliary streams, several execution contexts, TensorRT's enqueue beside a
  kernel on a blocking stream, and its host cost on the default stream (TensorRT only);
- :mod:`.claims`: the lab's claims as functions of those results.
"""

from .claims import (
    AUX_CLAIMS, DEFAULT_CLAIM, HOST_CLAIM, TRT_HOST_CLAIM, GpuStudies, aux_stream_claims, contexts_claims,
    streams_claims,
)
from .experiments import (
    BRANCHES, TIMELINE_FIGSIZE, MiB, MultiBranchNet, blocking_stream, build_multibranch, concat_fan_in,
    copy_bandwidth_study, export_multibranch, host_buffer, host_to_device_copy, in_threads, model_runners,
    multibranch_input, multibranch_sample_shape, on_streams, reference_errors, spin_kernel, timeline_plot,
)
from .tensorrt_study import (
    ContextsStudy, aux_stream_study, contexts_study, enqueue_on_current_stream, tensorrt_default_stream_study,
    tensorrt_host_cost_study, trtexec_commands,
)
from .timing import (
    Concurrency, ForkJoin, OverlapCase, OverlapStudy, Span, ThreadFork, Work, busy_overlap_ms, compare_concurrent,
    default_stream_host_cost, host_cost_study, overlap_fraction, overlap_study, with_lane_prefix,
)

__all__ = [
    "AUX_CLAIMS", "BRANCHES", "DEFAULT_CLAIM", "HOST_CLAIM", "TRT_HOST_CLAIM", "TIMELINE_FIGSIZE", "MiB", "Concurrency", "ContextsStudy", "ForkJoin", "GpuStudies",
    "MultiBranchNet", "OverlapCase", "OverlapStudy", "Span", "ThreadFork", "Work", "aux_stream_claims",
    "aux_stream_study", "blocking_stream", "build_multibranch", "busy_overlap_ms", "compare_concurrent",
    "concat_fan_in", "contexts_claims", "contexts_study", "copy_bandwidth_study", "default_stream_host_cost",
    "enqueue_on_current_stream", "export_multibranch", "host_buffer", "host_cost_study", "host_to_device_copy",
    "in_threads", "model_runners", "multibranch_input", "multibranch_sample_shape", "on_streams", "overlap_fraction",
    "overlap_study", "reference_errors", "spin_kernel", "streams_claims", "tensorrt_default_stream_study",
    "tensorrt_host_cost_study", "timeline_plot", "trtexec_commands", "with_lane_prefix",
]
