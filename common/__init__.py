"""TensorRT Performance Labs: the helpers every lab imports (`from common import bench, env, ...`)."""

import warnings

# Library notices that say nothing about the experiment they interrupt (and print the library's install
# path): silenced once here, since every lab imports this package first.
for _message in (
    r"IProgress not found",                                                # tqdm without ipywidgets
    r"transformers .* is not tested with current version of modelopt",     # ModelOpt's HF plugin check
    r"The PyTorch API of SparseSemiStructuredTensor is in prototype stage",
    r"TypedStorage is deprecated",                                         # raised inside Inductor
    r"Warning: Profiler clears events at the end of each cycle",
):
    warnings.filterwarnings("ignore", message=_message)
