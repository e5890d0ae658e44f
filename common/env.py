"""What this machine has: GPU, TensorRT, PyTorch, ONNX Runtime, and clear errors when a lab needs more.

Introduced in lab 00 (tour). Every lab calls :func:`detect` once and prints its header; a lab that
needs something the machine lacks calls :func:`require`, which raises :class:`RequirementError`
with a message that says what to do, or checks :func:`has` and runs its real counterpart instead.
"""

from __future__ import annotations

import enum
import functools
import importlib.metadata
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Oldest TensorRT the course's code paths support (strongly typed networks, name-based I/O API).
MIN_TENSORRT = (10, 8)


class RequirementError(RuntimeError):
    """A lab needs something this machine lacks; the message says what and what to do."""


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _tensorrt_version() -> tuple[str | None, str | None]:
    """``(version, None)`` for an importable TensorRT; ``(None, None)`` where none is installed;
    ``(None, error)`` where one is installed but fails to import (a missing libnvinfer, a wheel for
    another CUDA). Importing it is the only reliable test."""
    try:
        import tensorrt  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name == "tensorrt":
            return None, None
        return None, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # ImportError, OSError...: an install whose libraries fail to load
        return None, f"{type(exc).__name__}: {exc}"
    return str(getattr(tensorrt, "__version__", "unknown")), None


def _tensorrt_installed() -> str | None:
    """The installed TensorRT wheel's name and version, whether or not it imports."""
    for name in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-bindings", "tensorrt-cu12-bindings"):
        version = _dist_version(name)
        if version:
            return f"{name} {version}"
    return None


def _driver_version() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip().splitlines()
    except (subprocess.SubprocessError, OSError):
        return None
    return out[0].strip() if out else None


@dataclass(frozen=True)
class Environment:
    """A snapshot of what the machine offers to the labs."""

    python: str
    os: str
    cpu: str
    cpu_count: int
    torch: str | None
    cuda_available: bool
    gpu_name: str | None = None
    compute_capability: tuple[int, int] | None = None
    gpu_memory_gib: float | None = None
    sm_count: int | None = None
    driver: str | None = None
    cuda_runtime: str | None = None
    tensorrt: str | None = None
    onnxruntime: str | None = None
    ort_providers: tuple[str, ...] = field(default_factory=tuple)
    cuda_bindings: str | None = None
    onnx: str | None = None
    tensorrt_error: str | None = None   # why an installed TensorRT does not import

    # -- what the machine can do ---------------------------------------------------------------
    @property
    def has_gpu(self) -> bool:
        return self.cuda_available and self.gpu_name is not None

    @property
    def has_tensorrt(self) -> bool:
        return self.tensorrt is not None and self.has_gpu

    @property
    def device(self) -> str:
        """'cuda' when a GPU is usable, else 'cpu'."""
        return "cuda" if self.has_gpu else "cpu"

    @property
    def backend(self) -> str:
        """The backend a lab uses for its main experiment on this machine."""
        if self.has_tensorrt:
            return f"TensorRT {self.tensorrt}"
        if self.has_gpu:
            return "PyTorch (CUDA)"
        return "PyTorch / ONNX Runtime (CPU)"

    @property
    def machine(self) -> str:
        """A one-line name of the hardware that produced a result."""
        if self.has_gpu:
            return f"{self.gpu_name} (sm_{self.compute_capability[0]}{self.compute_capability[1]})" \
                if self.compute_capability else str(self.gpu_name)
        return f"CPU: {self.cpu} ({self.cpu_count} cores)"

    def header(self) -> str:
        """The block every lab prints first: hardware, versions, and the backend in use."""
        rows = [("machine", self.machine)]
        if self.has_gpu:
            rows += [
                ("GPU memory", f"{self.gpu_memory_gib:.0f} GiB, {self.sm_count} SMs"),
                ("driver / CUDA", f"{self.driver or 'unknown'} / {self.cuda_runtime or 'unknown'}"),
            ]
        rows += [
            ("python", self.python),
            ("PyTorch", self.torch or "not installed"),
            ("TensorRT", self.tensorrt or (f"does not import ({self.tensorrt_error})" if self.tensorrt_error
                                           else "not installed")),
            ("ONNX Runtime", f"{self.onnxruntime} {list(self.ort_providers)}" if self.onnxruntime else "not installed"),
            ("backend", self.backend),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}} : {v}" for k, v in rows)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["backend"] = self.backend
        d["machine"] = self.machine
        return d


@functools.lru_cache(maxsize=1)
def detect() -> Environment:
    """Look at the machine once (cached): GPU, versions, providers."""
    torch_version = None
    cuda = False
    gpu = cc = mem = sms = cuda_rt = None
    try:
        import torch

        torch_version = torch.__version__
        cuda = bool(torch.cuda.is_available())
        if cuda:
            props = torch.cuda.get_device_properties(0)
            gpu = props.name
            cc = (props.major, props.minor)
            mem = props.total_memory / 2**30
            sms = props.multi_processor_count
            cuda_rt = torch.version.cuda
    except ImportError:
        pass
    ort_version, providers = None, ()
    try:
        import onnxruntime as ort

        ort_version = ort.__version__
        providers = tuple(ort.get_available_providers())
    except ImportError:
        pass
    trt_version, trt_error = _tensorrt_version()
    return Environment(
        python=platform.python_version(),
        os=f"{platform.system()} {platform.release()}",
        cpu=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count() or 1,
        torch=torch_version,
        cuda_available=cuda,
        gpu_name=gpu,
        compute_capability=cc,
        gpu_memory_gib=mem,
        sm_count=sms,
        driver=_driver_version() if cuda else None,
        cuda_runtime=cuda_rt,
        tensorrt=trt_version,
        tensorrt_error=trt_error,
        onnxruntime=ort_version,
        ort_providers=providers,
        cuda_bindings=_dist_version("cuda-bindings", "cuda-python"),
        onnx=_dist_version("onnx"),
    )


# -- requirements ------------------------------------------------------------------------------

#: What each requirement needs, as (test, message when missing). Messages say what to do.
_INSTALL_TRT = (
    "Install TensorRT from NVIDIA's package index: `pip install -e \".[trt]\"` "
    "(see README, 'With TensorRT'), then restart the kernel."
)


def broken_tensorrt_message(error: str) -> str:
    """What to say when TensorRT is installed but `import tensorrt` fails with `error`."""
    installed = _tensorrt_installed()
    return (f"TensorRT is installed{f' ({installed})' if installed else ''} but does not import: {error}\n"
            "Check: (1) the TensorRT libraries (libnvinfer) came with it: `pip show tensorrt-cu12-libs "
            "tensorrt-cu13-libs` (one must be installed); (2) the wheel's CUDA major version (-cu12 or -cu13) "
            "matches your driver (`nvidia-smi` shows the newest CUDA it supports); (3) nothing on "
            "LD_LIBRARY_PATH shadows its libraries with another TensorRT. "
            "`python -c \"import tensorrt\"` shows the full error. " + _INSTALL_TRT)


def _check(need: str, env: Environment) -> str | None:
    """None when `need` is met, else the message to show."""
    cc = env.compute_capability or (0, 0)
    if need == "gpu":
        if env.torch is None:
            return "This needs PyTorch. Run `make setup` (README) to create the course environment."
        if not env.has_gpu:
            return ("This needs an NVIDIA GPU, and PyTorch sees none (torch.cuda.is_available() is False). "
                    "On a GPU machine check `nvidia-smi` and that PyTorch is a CUDA build; "
                    "on this machine the lab runs its CPU counterpart instead.")
        return None
    if need == "tensorrt":
        if env.tensorrt is None and env.tensorrt_error:
            return broken_tensorrt_message(env.tensorrt_error)
        if env.tensorrt is None:
            return "This needs TensorRT, which is not installed. " + _INSTALL_TRT
        if _version_tuple(env.tensorrt) < MIN_TENSORRT:
            return (f"TensorRT {env.tensorrt} is too old: the course needs {MIN_TENSORRT[0]}.{MIN_TENSORRT[1]} or "
                    "newer (strongly typed networks, name-based tensor API). " + _INSTALL_TRT)
        return _check("gpu", env)
    if need == "cuda-bindings":
        if env.cuda_bindings is None:
            return "This needs cuda-python: `pip install cuda-bindings` (it comes with the `trt` extra)."
        return None
    if need in ("fp8", "sparsity", "int8-tensor-cores", "bf16"):
        missing = _check("gpu", env)
        if missing:
            return missing
        floor = {"fp8": (8, 9), "sparsity": (8, 0), "int8-tensor-cores": (7, 5), "bf16": (8, 0)}[need]
        what = {"fp8": "FP8 tensor cores", "sparsity": "2:4 sparse tensor cores",
                "int8-tensor-cores": "INT8 tensor cores", "bf16": "BF16 tensor cores"}[need]
        if cc < floor:
            return (f"{env.gpu_name} (compute capability {cc[0]}.{cc[1]}) has no {what}: they need compute "
                    f"capability {floor[0]}.{floor[1]} or newer (FP8: Ada or Hopper; 2:4 sparsity and BF16: Ampere). "
                    "The lab reports this experiment as not applicable here.")
        return None
    if need == "onnxruntime":
        return None if env.onnxruntime else "This needs ONNX Runtime: run `make setup` (README)."
    raise ValueError(f"unknown requirement {need!r}; known: {sorted(REQUIREMENTS)}")


REQUIREMENTS = ("gpu", "tensorrt", "cuda-bindings", "fp8", "sparsity", "int8-tensor-cores", "bf16", "onnxruntime")


def has(*needs: str, env: Environment | None = None) -> bool:
    """True when every requirement in `needs` is met on this machine."""
    env = env or detect()
    return all(_check(n, env) is None for n in needs)


def require(*needs: str, env: Environment | None = None) -> Environment:
    """Raise :class:`RequirementError` naming the first missing requirement; return the environment."""
    env = env or detect()
    for need in needs:
        message = _check(need, env)
        if message:
            raise RequirementError(message)
    return env


def has_triton() -> bool:
    """True where Triton kernels can run: a CUDA GPU and Triton importable (not imported here).

    Introduced in lab 05 (fusion); lab 11 (plugins) uses it too."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


# -- scale and folders -------------------------------------------------------------------------

class Scale(str, enum.Enum):
    """How large a lab's experiments are: "full" on a GPU, "small" on a CPU (or a quick GPU pass).

    A str subclass, so ``Scale.FULL == "full"``; every function that takes a scale validates it with
    :func:`as_scale`, so a typo is an error naming the allowed values, never a quiet fallback.
    """

    FULL = "full"
    SMALL = "small"

    def __str__(self) -> str:
        return self.value


SCALES = tuple(s.value for s in Scale)


def as_scale(value: "Scale | str", *, source: str = "scale") -> Scale:
    """`value` as a :class:`Scale`; anything else raises ValueError naming the allowed values."""
    if isinstance(value, Scale):
        return value
    if isinstance(value, str) and value.strip().lower() in SCALES:
        return Scale(value.strip().lower())
    raise ValueError(f"{source} must be one of {', '.join(map(repr, SCALES))}, got {value!r}")


def scale(env: Environment | None = None) -> Scale:
    """FULL on a GPU, SMALL on a CPU; TRTLABS_SCALE=small|full overrides (for quick GPU runs).

    A TRTLABS_SCALE that is set but is neither value is an error, not a silent fallback.
    """
    forced = os.environ.get("TRTLABS_SCALE", "").strip()
    if forced:
        return as_scale(forced, source="TRTLABS_SCALE")
    env = env or detect()
    return Scale.FULL if env.has_gpu else Scale.SMALL


def pick(full, small, env: Environment | None = None):
    """`full` at full scale, `small` otherwise: how labs size their sweeps for the machine."""
    return full if scale(env) is Scale.FULL else small


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


class FolderError(RuntimeError):
    """A folder the course writes to cannot be used; the message says which, why, and what to do."""


#: The folders the course writes to: environment variable, default under the project root, contents.
FOLDERS = {"TRTLABS_CACHE": (".cache", "engines, timing caches and measured ceilings"),
           "TRTLABS_RESULTS": ("results", "figures, CSV and claims")}


def _folder(variable: str) -> Path:
    """The folder `variable` names; a relative path or one starting with ~ is taken from the project
    root (with ~ expanded), never from the kernel's working folder (labs/)."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return project_root() / FOLDERS[variable][0]
    path = Path(raw).expanduser()
    return path if path.is_absolute() else project_root() / path


def _made(path: Path, variable: str) -> Path:
    """`path` created if missing; a clear :class:`FolderError` if it cannot be a folder."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise FolderError(f"{variable} is {path}, which is a file, not a folder: point {variable} at a folder "
                          f"(or unset it to use {FOLDERS[variable][0]}/ in the course folder)") from None
    except OSError as exc:
        raise FolderError(f"cannot create {path} ({variable}): {exc.strerror or exc}. Point {variable} at a "
                          f"folder you can write to (or unset it to use {FOLDERS[variable][0]}/ in the course "
                          "folder)") from None
    return path


def check_writable(path: Path, what: str) -> Path:
    """Create `path` if needed and prove that a file can be written in it; else :class:`FolderError`
    naming `what` (the variable or option that chose the folder)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except FileExistsError:
        raise FolderError(f"{what} is {path}, which is a file, not a folder") from None
    except OSError as exc:
        raise FolderError(f"{what} is {path}, where nothing can be written ({exc.strerror or exc}): "
                          "choose a writable folder") from None
    return path


def check_folders() -> dict[str, Path]:
    """The cache and results folders, each checked to be a writable folder before any lab work starts
    (`common.execute` calls it first), so a bad TRTLABS_CACHE fails at once, not after lab 00 has measured."""
    checked = {}
    for variable, (default, holds) in FOLDERS.items():
        where = f"{variable} ({holds})" if os.environ.get(variable, "").strip() else f"the {default}/ folder ({holds})"
        checked[variable] = check_writable(_folder(variable), where)
    return checked


def cache_dir() -> Path:
    """Engines, timing caches and measured ceilings (ignored by git); TRTLABS_CACHE overrides."""
    return _made(_folder("TRTLABS_CACHE"), "TRTLABS_CACHE")


def results_dir(lab: str | None = None) -> Path:
    """Where labs write figures, CSV and claims JSON (ignored by git); TRTLABS_RESULTS overrides."""
    path = _made(_folder("TRTLABS_RESULTS"), "TRTLABS_RESULTS")
    return _made(path / lab, "TRTLABS_RESULTS") if lab else path
