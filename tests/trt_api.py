"""Static checks of the project's TensorRT code against vendored listings of the TensorRT API.

TensorRT cannot be installed on the machines that run the tests, so nothing here imports it.
``tests/data/tensorrt-11.4-python-api.json`` lists every class, method signature, property, enum
member and module function of the 11.4 wheel, and what 11.x removed relative to 10.16;
``tests/data/tensorrt-10.{8,9,10,16}-python-api.json`` list the names and call arity of each 10.x
release the course supports, generated from NVIDIA/TensorRT's release branches by
``tests/data/make_trt_listing.py`` (each records its branch and commit). From them:

* :func:`find_trt_uses` and :func:`check_uses` check every ``trt.X.Y`` name a file spells out,
  and the arity and keywords of calls such as ``trt.Runtime(logger)``. They need no type
  information, so they also cover notebooks.
* :func:`check_versions` checks each name against every version the ``compat`` guards around it
  admit (:class:`GuardedVersions`), and a name outside any guard against all five.
* :func:`generate_stubs` writes a ``tensorrt`` stub package (from the 11.4 listing) and
  :func:`run_mypy` type-checks code with it, which catches the misuse of objects TensorRT returns
  (``builder.create_builder_config().set_flag(...)``), which the name check cannot see.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import keyword
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any


DEFAULT_LISTING = Path(__file__).parent / "data" / "tensorrt-11.4-python-api.json"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Test code that uses TensorRT and is checked like the course's own (the live suite).
TEST_SOURCES = ("tests/trt_live",)

#: What replaced names TensorRT 11 removed, from TENSORRT_11_REFERENCE.md (sections 2-4, 10, 12).
_AUTOCAST = ("convert the ONNX model with ModelOpt AutoCast "
             "(modelopt.onnx.autocast.convert_to_mixed_precision); networks are always strongly typed")
_QDQ = "quantize explicitly with Q/DQ nodes from ModelOpt (modelopt.onnx.quantization.quantize)"
_STRONG = "networks are always strongly typed: change precisions with network.add_cast"
REPLACEMENTS: dict[str, str] = {
    "BuilderFlag.FP16": _AUTOCAST,
    "BuilderFlag.BF16": _AUTOCAST,
    **{f"BuilderFlag.{flag}": _QDQ for flag in ("INT8", "FP8", "INT4", "FP4")},
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS": _STRONG,
    "BuilderFlag.PREFER_PRECISION_CONSTRAINTS": _STRONG,
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": "drop it: builder.create_network(0) is explicit-batch",
    **{f"TacticSource.{src}": "only EDGE_MASK_CONVOLUTIONS and JIT_CONVOLUTIONS remain"
       for src in ("CUBLAS", "CUBLAS_LT", "CUDNN")},
    **{cls: _QDQ for cls in ("IInt8Calibrator", "IInt8EntropyCalibrator", "IInt8EntropyCalibrator2",
                             "IInt8MinMaxCalibrator", "IInt8LegacyCalibrator", "CalibrationAlgoType",
                             "QuantizationFlag", "IBuilderConfig.int8_calibrator")},
    **{cls: "use the editable timing cache (BuilderFlag.EDITABLE_TIMING_CACHE, ITimingCache.update)"
       for cls in ("IAlgorithm", "IAlgorithmContext", "IAlgorithmIOInfo", "IAlgorithmSelector",
                   "IAlgorithmVariant", "IBuilderConfig.algorithm_selector")},
    "IStreamReader": "use IStreamReaderV2",
    "ICudaEngine.device_memory_size": "use device_memory_size_v2",
    "ICudaEngine.get_device_memory_size_for_profile": "use get_device_memory_size_for_profile_v2",
    "ICudaEngine.weight_streaming_budget": "use weight_streaming_budget_v2",
    "ICudaEngine.create_execution_context_without_device_memory":
        "use create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)",
    "IExecutionContext.all_shape_inputs_specified": "use infer_shapes()",
    "OnnxParser.supports_model": "use supports_model_v2",
    "IPluginRegistry.get_plugin_creator": "use get_creator(type, version, plugin_namespace)",
    "IPluginRegistry.plugin_creator_list": "use all_creators",
    **{f"ILayer.{name}": _STRONG for name in ("precision", "precision_is_set", "reset_precision",
                                               "set_output_type", "output_type_is_set", "reset_output_type")},
    **{f"ITensor.{name}": _QDQ for name in ("dynamic_range", "set_dynamic_range", "reset_dynamic_range")},
}

#: pybind11 implicit conversions the listing cannot show (``py::implicitly_convertible`` in the
#: TensorRT sources): where a signature says ``Dims``, a tuple or list of ints is accepted too.
IMPLICIT_CONVERSIONS: dict[str, str] = {
    **dict.fromkeys(("Dims", "Dims2", "Dims3", "Dims4", "DimsHW", "Permutation"),
                    "collections.abc.Sequence[typing.SupportsInt]"),
    "Weights": "typing.Any",  # any contiguous array-like that numpy accepts
    "FallbackString": "builtins.str",
}
#: Classes with ``py::buffer_protocol()``, so ``bytes(plan)`` and ``file.write(plan)`` work.
BUFFER_CLASSES = frozenset({"IHostMemory"})
#: Module attributes that exist although the listing (classes and functions only) omits them.
MODULE_DUNDERS = frozenset({"__version__", "__file__", "__name__", "__path__", "__doc__"})

_BUILTIN_TYPES = frozenset({"int", "str", "bool", "float", "bytes", "object", "tuple", "list", "dict",
                            "set", "slice", "type", "complex", "bytearray", "memoryview"})
_GENERIC_ARGS = {"builtins.tuple": "[typing.Any, ...]", "builtins.list": "[typing.Any]",
                 "builtins.dict": "[typing.Any, typing.Any]", "builtins.set": "[typing.Any]",
                 "collections.abc.Callable": "[..., typing.Any]", "collections.abc.Iterable": "[typing.Any]",
                 "collections.abc.Iterator": "[typing.Any]", "collections.abc.Sequence": "[typing.Any]"}
_TYPE_TOKEN = re.compile(r"(?:\w+::)+\w+(?:<[^<>]*>)?|[A-Za-z_][\w.]*")
_CELL_MARKER = re.compile(r"^# %% \[cell (\d+)\]$")


def load_listing(path: str | Path = DEFAULT_LISTING) -> dict[str, Any]:
    """The vendored API listing, as parsed JSON."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --------------------------------------------------------------------------------------------
# pybind11 signatures


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    annotation: str | None
    default: str | None
    kind: str  # "positional" (pybind's unnamed argN), "any", "*", "**"

    @property
    def required(self) -> bool:
        return self.default is None and self.kind in ("positional", "any")


@dataclasses.dataclass(frozen=True)
class Signature:
    """One pybind11 signature; ``params`` excludes ``self``, which ``bound`` records."""

    name: str
    params: tuple[Param, ...]
    returns: str | None
    bound: bool

    @property
    def is_dispatcher(self) -> bool:
        return [p.kind for p in self.params] == ["*", "**"]

    def __str__(self) -> str:
        shown = ", ".join(p.name + (f": {_plain(p.annotation)}" if p.annotation else "")
                          + (" = ..." if p.default else "") for p in self.params)
        return f"{self.name}({shown})"


def _plain(annotation: str) -> str:
    return re.sub(r"\btrt\.", "", annotation)


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside brackets (``[]``, ``()``, ``<>``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[(<":
            depth += 1
        elif ch in "])>":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_signature(text: str) -> Signature:
    """Parse ``name(self: trt.X, a: T = <Enum.M: 0>) -> R`` as pybind11 writes it."""
    open_at = text.index("(")
    depth = 0
    for close_at in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[close_at], 0)
        if depth == 0:
            break
    rest = text[close_at + 1:].strip()
    returns = rest[2:].strip() if rest.startswith("->") else None
    params = []
    for raw in _split_top_level(text[open_at + 1:close_at], ","):
        head, *default = _split_top_level(raw, "=")
        name, _, annotation = head.partition(":")
        name = name.strip()
        kind = "**" if name.startswith("**") else "*" if name.startswith("*") else (
            "positional" if re.fullmatch(r"arg\d+", name) else "any")
        params.append(Param(name.lstrip("*"), annotation.strip() or None,
                            default[0] if default else None, kind))
    bound = bool(params) and params[0].name == "self"
    return Signature(text[:open_at].strip(), tuple(params[1:] if bound else params), returns, bound)


def _signatures(texts: Sequence[str]) -> list[Signature]:
    """Parsed signatures, without pybind11's ``(*args, **kwargs)`` dispatcher when others exist."""
    parsed = [parse_signature(t) for t in texts]
    return [s for s in parsed if not s.is_dispatcher] or parsed


# --------------------------------------------------------------------------------------------
# The listing, with inheritance


class Api:
    """Look-ups over the listing that follow base classes, as Python attribute access does."""

    def __init__(self, listing: dict[str, Any]):
        self.listing = listing
        self.classes: dict[str, dict[str, Any]] = listing["classes"]
        diff = listing["diff_10_16_source_to_11_4"]
        self.removed_classes = set(diff["classes_removed"])
        self.removed_members: dict[str, list[str]] = diff["per_class_removed_members"]

    def mro(self, name: str) -> list[str]:
        order = [name]
        for base in self.classes[name]["bases"]:
            order += [b for b in self.mro(base) if b not in order]
        return order

    def is_enum(self, name: str) -> bool:
        return self.classes[name]["kind"] == "enum"

    def is_interface(self, name: str) -> bool:
        """A class Python code implements (TensorRT calls its methods): ``I...`` with a constructor.

        Its stub methods take and return ``Any``, so that a subclass's own annotations are never
        reported as an incompatible override; the names and arity of the methods still count.
        """
        return name.startswith("I") and "__init__" in self.classes[name].get("methods", {})

    def nested(self, owner: str, name: str) -> str | None:
        """The listing key of nested class ``owner.name``, from the most basic class that defines it.

        ``Logger.Severity`` -> ``ILogger.Severity``: Logger inherits it, so the stub defines it once.
        """
        return next((f"{c}.{name}" for c in reversed(self.mro(owner)) if f"{c}.{name}" in self.classes),
                    None)

    def qualified(self, name: str) -> str | None:
        """The stub's name for listing class ``name`` (nested ones resolved); None if unknown."""
        owner, _, inner = name.rpartition(".")
        if owner in self.classes:
            return self.nested(owner, inner)
        return name if name in self.classes else None

    def member(self, cls: str, name: str) -> tuple[str, str, Any] | None:
        """``(kind, owner, info)`` for attribute ``name`` of class ``cls``, or None."""
        for owner in self.mro(cls):
            entry = self.classes[owner]
            if name in entry.get("methods", {}):
                return "method", owner, entry["methods"][name]
            if name in entry.get("properties", {}):
                return "property", owner, entry["properties"][name]
            if name in entry.get("enum_values", {}):
                return "enum_member", owner, owner
            value = entry.get("class_attributes", {}).get(name)
            if value is not None:
                nested = self.qualified(f"{owner}.{value.removeprefix('class:')}")
                return ("class" if value.startswith("class:") else "enum_member"), owner, nested
        return None

    def member_names(self, cls: str) -> set[str]:
        names: set[str] = set()
        for owner in self.mro(cls):
            entry = self.classes[owner]
            for key in ("methods", "properties", "enum_values", "class_attributes"):
                names.update(entry.get(key, {}))
        return names

    def removed_from(self, cls: str, name: str) -> str | None:
        """The class (``cls`` or a base) from which 11.x removed member ``name``."""
        return next((o for o in self.mro(cls) if name in self.removed_members.get(o, ())), None)


# --------------------------------------------------------------------------------------------
# Stub generation


class _StubWriter:
    """Writes ``tensorrt/__init__.pyi``: every name in the listing, typed as far as it says."""

    def __init__(self, api: Api):
        self.api = api

    def annotation(self, raw: str | None, role: str, interface: bool = False) -> str:
        """A stub annotation for pybind11's type text; ``role`` is "param" or "return".

        ``trt.X`` becomes ``X``; C++ names that leaked into the docstrings (``nvinfer1::TensorFormat``)
        become the Python class of the same name, or Any.
        """
        if raw is None or interface:
            return "typing.Any"

        def token(match: re.Match[str]) -> str:
            text = match.group(0)
            if "::" in text:  # C++ leftovers: nvinfer1::TensorFormat, detail::accessor<...>
                last = text.split("<")[0].rpartition("::")[2]
                return self.class_type(last, role) if last in self.api.classes else "typing.Any"
            if text.startswith("trt."):
                name = self.api.qualified(text[4:])
                return self.class_type(name, role) if name else "typing.Any"
            if text in _BUILTIN_TYPES:
                text = f"builtins.{text}"
            elif text != "None" and not text.startswith(("typing.", "collections.abc.")):
                # numpy.ndarray, typing_extensions.CapsuleType; and typing_extensions.Buffer, which
                # numpy arrays only satisfy from Python 3.12 on.
                return "typing.Any"
            if text in _GENERIC_ARGS and not match.string.startswith("[", match.end()):
                text += _GENERIC_ARGS[text]  # pybind11 writes a bare "tuple" or "Iterable"
            return text

        return _TYPE_TOKEN.sub(token, raw)

    def class_type(self, name: str, role: str) -> str:
        """``name``, widened for a parameter by what pybind11 converts to it implicitly."""
        alternative = IMPLICIT_CONVERSIONS.get(name)
        return f"{name} | {alternative}" if role == "param" and alternative else name

    def signature(self, sig: Signature, name: str, interface: bool) -> str:
        params = ["self"] if sig.bound else []
        # Unnamed (argN) parameters cannot be passed by keyword, nor can those named after a Python
        # keyword (``in``), which are renamed ``in_``.
        positional_only = max((i for i, p in enumerate(sig.params)
                               if p.kind == "positional" or keyword.iskeyword(p.name)), default=-1)
        seen_default = False
        for i, p in enumerate(sig.params):
            if p.kind in ("*", "**"):
                params.append(f"{p.kind}{p.name}: typing.Any")
                continue
            annotation = self.annotation(p.annotation, "param", interface)
            if p.default == "None" and not interface:
                annotation += " | None"
            # pybind11 allows a required argument after a defaulted one; a stub cannot say so.
            seen_default = seen_default or p.default is not None
            default = " = ..." if seen_default else ""
            pname = p.name + "_" if keyword.iskeyword(p.name) else p.name
            params.append(f"{pname}: {annotation}{default}")
            if i == positional_only:
                params.append("/")
        returns = "None" if name == "__init__" else self.annotation(sig.returns, "return", interface)
        return f"def {name}({', '.join(params)}) -> {returns}: ..."

    def method_lines(self, cls: str, name: str, texts: list[str]) -> list[str]:
        interface = self.api.is_interface(cls)
        sigs = _signatures(texts)
        defs = list(dict.fromkeys(self.signature(s, name, interface) for s in sigs))
        static = not sigs[0].bound and not sigs[0].is_dispatcher
        lines = []
        for d in defs:
            lines += ["@staticmethod"] * static + ["@typing.overload"] * (len(defs) > 1) + [d]
        if name == "__getitem__" and "__iter__" not in self.api.member_names(cls):
            # Python iterates over __getitem__/__len__ classes (Dims); mypy needs __iter__ for that.
            item = next((s.returns for s in sigs if s.params and s.params[0].annotation == "typing.SupportsInt"),
                        None)
            lines.append(f"def __iter__(self) -> collections.abc.Iterator[{self.annotation(item, 'return')}]: ...")
        return lines

    def property_lines(self, name: str, info: dict[str, Any]) -> list[str]:
        match = re.match(r"\s*:class:`(?:tensorrt\.)?([\w.]+)`", info.get("doc") or "")
        raw = match.group(1) if match else None
        if raw in ("int", "str", "bool", "float"):
            getter = f"builtins.{raw}"
        else:
            getter = (self.api.qualified(raw) if raw else None) or "typing.Any"
        if info["access"] == "read-only":
            return ["@property", f"def {name}(self) -> {getter}: ..."]
        setter = self.class_type(getter, "param")
        if getter in self.api.classes and not self.api.is_enum(getter):
            setter += " | None"  # pybind11 passes None as a null pointer
        if setter == getter:
            return [f"{name}: {getter}"]
        return ["@property", f"def {name}(self) -> {getter}: ...",
                f"@{name}.setter", f"def {name}(self, value: {setter}) -> None: ..."]

    def redefinition(self, cls: str, name: str, lines: list[str]) -> list[str]:
        """Mark where pybind11 redefines a base member incompatibly (``IActivationLayer.type``).

        A method that keeps its base's parameter names is compatible: an interface's methods take
        ``Any``, and the others return the same or narrower types.
        """
        if name == "__init__":
            return lines  # mypy does not compare constructors
        own = self.shape(name, self.api.member(cls, name))
        for base in self.api.mro(cls)[1:]:
            found = self.api.member(base, name)
            if found is None or found[1] != base:
                continue
            if self.shape(name, found) != own:
                first = next(i for i, line in enumerate(lines) if not line.startswith("@"))
                code = "override" if lines[first].startswith("def ") else "assignment"
                lines[first] += f"  # type: ignore[{code}]"
            break
        return lines

    def shape(self, name: str, member: tuple[str, str, Any] | None) -> tuple[Any, ...]:
        """What must match between a member and its redefinition: kind, and names or type."""
        assert member is not None
        kind, _, info = member
        if kind == "method":
            return kind, [[p.name for p in s.params] for s in _signatures(info["signatures"])]
        return kind, self.property_lines(name, info)

    def enum_body(self, qualname: str, entry: dict[str, Any]) -> list[str]:
        members = [f"{m}: typing.ClassVar[{qualname}]" for m in entry["enum_values"]]
        return members + [
            f"__members__: typing.ClassVar[builtins.dict[builtins.str, {qualname}]]",
            "def __init__(self, value: typing.SupportsInt) -> None: ...",
            "@property",
            "def name(self) -> builtins.str: ...",
            "@property",
            "def value(self) -> builtins.int: ...",
            "def __int__(self) -> builtins.int: ...",
            "def __index__(self) -> builtins.int: ...",
            "def __hash__(self) -> builtins.int: ...",
        ]

    def class_body(self, name: str) -> list[str]:
        entry = self.api.classes[name]
        if entry["kind"] == "enum":
            return self.enum_body(name, entry)
        body: list[str] = []
        inherited = {a for b in self.api.mro(name)[1:] for a in self.api.classes[b].get("class_attributes", {})}
        attributes = {a: v for a, v in entry.get("class_attributes", {}).items() if a not in inherited}
        for attr, value in sorted(attributes.items(), key=lambda item: not item[1].startswith("class:")):
            if value.startswith("class:"):  # a nested enum, e.g. ILogger.Severity
                key = f"{name}.{attr}"
                body += [f"class {attr}:"] + _indent(self.enum_body(key, self.api.classes[key]))
            else:  # one of its members, e.g. ILogger.WARNING
                body.append(f"{attr}: typing.ClassVar[{self.api.qualified(f'{name}.{value}')}]")
        for method, info in entry.get("methods", {}).items():
            body += self.redefinition(name, method, self.method_lines(name, method, info["signatures"]))
        for prop, info in entry.get("properties", {}).items():
            body += self.redefinition(name, prop, self.property_lines(prop, info))
        if name in BUFFER_CLASSES:
            body.append("def __buffer__(self, flags: builtins.int, /) -> builtins.memoryview: ...")
        return body or ["..."]

    def module(self) -> str:
        lines = ["# Generated by tests/trt_api.py from the vendored TensorRT API listing. Do not edit.",
                 "import builtins", "import collections.abc", "import typing",
                 "from . import plugin as plugin", "",
                 "__version__: builtins.str"]
        for name, value in self.api.listing["module_attributes"].items():
            match = re.match(r"<(\w+)\.\w+: -?\d+>", value)
            lines.append(f"{name}: {match.group(1) if match else 'typing.Any'}")
        for name, text in self.api.listing["module_functions"].items():
            if "(" in text:
                lines.append(self.signature(parse_signature(text), name, interface=False))
            else:  # "python: function": no signature recorded
                lines.append(f"def {name}(*args: typing.Any, **kwargs: typing.Any) -> typing.Any: ...")
        for name, entry in self.api.classes.items():
            if "." in name:
                continue  # nested: written inside its owner
            bases = ", ".join(entry["bases"])
            lines += ["", f"class {name}{f'({bases})' if bases else ''}:"] + _indent(self.class_body(name))
        return "\n".join(lines) + "\n"


def _indent(lines: list[str]) -> list[str]:
    return ["    " + line for line in lines]


def _plugin_stub(listing: dict[str, Any]) -> str:
    """``tensorrt.plugin`` is pure Python and experimental: its names exist, their types are Any."""
    lines = ["# Generated by tests/trt_api.py from the vendored TensorRT API listing. Do not edit.",
             "import typing", ""]
    for name, info in listing["tensorrt_plugin_module"].items():
        if info["type"] == "function":
            lines.append(f"def {name}(*args: typing.Any, **kwargs: typing.Any) -> typing.Any: ...")
        elif info["type"] in ("type", "SymIntExprMeta"):
            lines += ["", f"class {name}:",
                      "    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None: ...",
                      "    def __getattr__(self, name: str) -> typing.Any: ..."]
        else:
            lines.append(f"{name}: typing.Any")
    return "\n".join(lines) + "\n"


def generate_stubs(listing: dict[str, Any], out_dir: str | Path) -> Path:
    """Write the stub package ``out_dir/tensorrt``; returns ``out_dir``, the directory for MYPYPATH."""
    out = Path(out_dir)
    package = out / "tensorrt"
    (package / "plugin").mkdir(parents=True, exist_ok=True)
    (package / "__init__.pyi").write_text(_StubWriter(Api(listing)).module(), encoding="utf-8")
    (package / "plugin" / "__init__.pyi").write_text(_plugin_stub(listing), encoding="utf-8")
    return out


# --------------------------------------------------------------------------------------------
# Finding the TensorRT names a source spells out


@dataclasses.dataclass(frozen=True)
class Call:
    positional: int
    keywords: tuple[str, ...]
    unpacked: bool  # f(*args) or f(**kwargs): the counts are only a lower bound


@dataclasses.dataclass(frozen=True)
class Use:
    """One attribute chain rooted at ``tensorrt``: ``trt.Logger.WARNING`` is path (Logger, WARNING)."""

    where: str  # "common/trt/build.py:12", or "labs/01.ipynb:cell 4:2"
    line: int  # in the source given to find_trt_uses
    text: str  # as written, e.g. "trt.Logger.WARNING"
    path: tuple[str, ...]
    call: Call | None = None
    col: int = 0  # column of the chain's first character, for the version guards around it


class _UseFinder(ast.NodeVisitor):
    """Records chains rooted at names bound by ``import tensorrt`` in any form, anywhere in the file.

    Imports inside functions count for the whole file: a name is rarely rebound to something else.
    String annotations (``"trt.ICudaEngine"``, common when TensorRT is imported lazily) count too.
    """

    def __init__(self, locate: Callable[[int], str]):
        self.locate = locate  # line number -> "file:line"
        self.roots: dict[str, tuple[str, ...]] = {}  # local name -> path inside tensorrt
        self.string_annotations: set[int] = set()  # ids of str constants inside annotations
        self.uses: list[Use] = []

    def prepare(self, tree: ast.AST) -> None:
        """A first pass: the names imports of tensorrt bind (wherever they are), and annotations."""
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "tensorrt":
                        if alias.asname:  # import tensorrt.plugin as trtp
                            self.roots[alias.asname] = tuple(alias.name.split(".")[1:])
                        else:  # import tensorrt.plugin binds "tensorrt"
                            self.roots["tensorrt"] = ()
            for path, alias in _imported_from_tensorrt(node):
                self.roots[alias.asname or alias.name] = path
            annotation = (node.returns if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                          else node.annotation if isinstance(node, (ast.arg, ast.AnnAssign)) else None)
            if annotation is not None:
                self.string_annotations.update(id(n) for n in ast.walk(annotation)
                                               if isinstance(n, ast.Constant) and isinstance(n.value, str))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for path, alias in _imported_from_tensorrt(node):
            self.uses.append(Use(self.locate(node.lineno), node.lineno, ".".join(["tensorrt", *path]), path,
                                 col=node.col_offset))

    def chain(self, node: ast.expr) -> tuple[str, tuple[str, ...]] | None:
        """``(text, path)`` when ``node`` is ``root.a.b`` for a tensorrt root, else None."""
        names: list[str] = []
        while isinstance(node, ast.Attribute):
            names.insert(0, node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.roots:
            path = self.roots[node.id] + tuple(names)
            return ".".join([node.id, *names]), path
        return None

    def record(self, node: ast.expr, call: Call | None = None) -> bool:
        """Record ``node`` if it is a tensorrt chain; True if it is rooted at tensorrt at all."""
        found = self.chain(node)
        if found and found[1]:
            self.uses.append(Use(self.locate(node.lineno), node.lineno, found[0], found[1], call, node.col_offset))
        return found is not None

    def visit_Call(self, node: ast.Call) -> None:
        call = Call(sum(not isinstance(a, ast.Starred) for a in node.args),
                    tuple(k.arg for k in node.keywords if k.arg),
                    any(isinstance(a, ast.Starred) for a in node.args) or any(not k.arg for k in node.keywords))
        if not self.record(node.func, call):
            self.visit(node.func)
        for child in [*node.args, *node.keywords]:
            self.visit(child)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if not self.record(node):
            self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self.record(node)  # a name from "from tensorrt import Builder"

    def visit_Constant(self, node: ast.Constant) -> None:
        if id(node) in self.string_annotations and isinstance(node.value, str):
            try:
                expression = ast.parse(node.value.strip(), mode="eval")
            except SyntaxError:
                return  # not an expression: mypy reports it
            ast.increment_lineno(expression, node.lineno - 1)
            self.visit(expression)


def _imported_from_tensorrt(node: ast.AST) -> Iterator[tuple[tuple[str, ...], ast.alias]]:
    """For ``from tensorrt[.plugin] import X``: X's path inside tensorrt, and its alias node."""
    if isinstance(node, ast.ImportFrom) and not node.level and node.module:
        package, *inner = node.module.split(".")
        if package == "tensorrt":
            for alias in node.names:
                if alias.name != "*":
                    yield (*inner, alias.name), alias


def _parse(source: str, filename: str) -> ast.Module:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # notebooks may await at top level
    return compile(source, filename, "exec", flags)  # type: ignore[no-any-return]


def find_trt_uses(source: str, filename: str) -> list[Use]:
    """Every ``tensorrt`` name ``source`` spells out, in order of appearance.

    Only imports of TensorRT are followed, never values: ``trt.Builder(logger).create_network`` is
    a use of ``trt.Builder``; what it returns is for mypy to check.
    """
    markers = [(number, int(m.group(1))) for number, line in enumerate(source.splitlines(), start=1)
               if (m := _CELL_MARKER.match(line))]

    def locate(line: int) -> str:
        """``file:line``; in a notebook source from code_sources, ``file:cell N:line``."""
        above = [(number, cell) for number, cell in markers if number < line]
        if above:
            number, cell = above[-1]
            return f"{filename}:cell {cell}:{line - number}"
        return f"{filename}:{line}"

    finder = _UseFinder(locate)
    tree = _parse(source, filename)
    finder.prepare(tree)
    finder.visit(tree)
    return finder.uses


# --------------------------------------------------------------------------------------------
# Checking the names against the listing


@dataclasses.dataclass(frozen=True)
class Problem:
    where: str
    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.name}: {self.message}"


@dataclasses.dataclass(frozen=True)
class _Target:
    """What a resolved path names. Only modules, classes and enum members have checkable attributes."""

    kind: str  # "module", "plugin", "class", "enum_member", "callable", "opaque"
    name: str = ""  # the class, for "class" and "enum_member"
    signatures: tuple[Signature, ...] = ()  # for "callable", and "class" constructors


class _Checker:
    def __init__(self, listing: dict[str, Any]):
        self.api = Api(listing)
        self.listing = listing

    def check(self, use: Use) -> Problem | None:
        target = _Target("module")
        for name in use.path:
            found = self.attribute(target, name)
            if isinstance(found, str):
                return Problem(use.where, use.text, found)
            target = found
            if target.kind in ("callable", "opaque"):
                break  # the listing does not say what a function or property returns
        if use.call:
            return self.check_call(use, target)
        return None

    def attribute(self, target: _Target, name: str) -> _Target | str:
        """What attribute ``name`` of ``target`` is, or a message saying why it does not exist."""
        if name.startswith("__") and name.endswith("__") and target.kind in ("plugin", "enum_member"):
            return _Target("opaque")
        if target.kind == "module":
            return self.module_attribute(name)
        if target.kind == "plugin":
            info = self.listing["tensorrt_plugin_module"].get(name)
            if info is None:
                return self.missing(name, self.listing["tensorrt_plugin_module"], "tensorrt.plugin")
            text = info.get("signature") or ""
            return _Target("callable", signatures=(parse_signature(name + text),)) if text else _Target("opaque")
        if target.kind == "enum_member":
            if name in ("name", "value"):
                return _Target("opaque")
            return f"an enum member has no attribute {name!r}"
        return self.class_attribute(target.name, name)

    def module_attribute(self, name: str) -> _Target | str:
        listing = self.listing
        if name == "plugin":
            return _Target("plugin")
        if name in listing["module_functions"]:
            text = listing["module_functions"][name]
            sigs = (parse_signature(text),) if "(" in text else ()
            return _Target("callable", signatures=sigs)
        if name in listing["module_attributes"]:
            match = re.match(r"<(\w+)\.", listing["module_attributes"][name])
            return _Target("enum_member", match.group(1)) if match else _Target("opaque")
        if name in self.api.classes and "." not in name:
            return self.class_target(name)
        if name in MODULE_DUNDERS:
            return _Target("opaque")
        if name in self.api.removed_classes:
            return self.removed(name)
        public = [n for n in [*listing["module_functions"], *listing["module_attributes"], *self.api.classes]
                  if "." not in n]
        return self.missing(name, public, "tensorrt")

    def class_target(self, name: str) -> _Target:
        if self.api.is_enum(name):
            return _Target("class", name, (parse_signature("__init__(self, value: typing.SupportsInt)"),))
        init = self.api.member(name, "__init__")
        sigs = tuple(_signatures(init[2]["signatures"])) if init else ()
        return _Target("class", name, sigs)

    def class_attribute(self, cls: str, name: str) -> _Target | str:
        found = self.api.member(cls, name)
        if found is None:
            if name.startswith("__") and name.endswith("__"):
                return _Target("opaque")  # __name__, __members__, __doc__ ...
            removed_from = self.api.removed_from(cls, name)
            if removed_from:
                return self.removed(f"{removed_from}.{name}")
            return self.missing(name, self.api.member_names(cls), cls)
        kind, _, info = found
        if kind == "class":
            return self.class_target(info)
        if kind == "enum_member":
            return _Target("enum_member", info)
        if kind == "method":
            # Looked up on the class, so a method is unbound: self is an ordinary argument.
            sigs = [s if not s.bound else Signature(s.name, (Param("self", None, None, "any"), *s.params),
                                                    s.returns, False) for s in _signatures(info["signatures"])]
            return _Target("callable", signatures=tuple(sigs))
        return _Target("opaque")  # a property

    def removed(self, qualname: str) -> str:
        message = "removed in TensorRT 11 (present in 10.16)"
        replacement = REPLACEMENTS.get(qualname)
        return f"{message}; {replacement}" if replacement else message

    def missing(self, name: str, candidates: Iterable[str], owner: str) -> str:
        close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{owner} has no attribute {name!r} in TensorRT {self.version}{hint}"

    @property
    def version(self) -> str:
        return ".".join(self.listing["meta"]["tensorrt_version"].split(".")[:2])

    def check_call(self, use: Use, target: _Target) -> Problem | None:
        assert use.call is not None
        if target.kind == "class" and not target.signatures:
            return Problem(use.where, use.text, f"{target.name} has no Python constructor")
        if not target.signatures or any(_accepts(s, use.call) for s in target.signatures):
            return None
        keywords = f" and keyword(s) {', '.join(use.call.keywords)}" if use.call.keywords else ""
        named = target.name or use.path[-1]  # constructors: Runtime(...), not __init__(...)
        fits = " or ".join(str(dataclasses.replace(s, name=named)) for s in target.signatures)
        return Problem(use.where, use.text, f"no signature takes {use.call.positional} positional "
                                            f"argument(s){keywords}; expected {fits} in TensorRT {self.version}")


def _accepts(sig: Signature, call: Call) -> bool:
    """Whether a call with these argument counts and keyword names can bind to ``sig``."""
    kinds = {p.kind for p in sig.params}
    slots = [p for p in sig.params if p.kind in ("positional", "any")]
    if call.positional > len(slots) and "*" not in kinds:
        return False
    filled = {p.name for p in slots[:call.positional]}
    by_keyword = {p.name for p in slots if p.kind == "any"}
    for name in call.keywords:
        if name in filled or (name not in by_keyword and "**" not in kinds):
            return False
        filled.add(name)
    return call.unpacked or all(p.name in filled for p in slots if p.required)


def check_uses(uses: Sequence[Use], listing: dict[str, Any]) -> list[Problem]:
    """A problem for each use of a name TensorRT 11.4 lacks, and each call no signature accepts."""
    checker = _Checker(listing)
    return [p for p in map(checker.check, uses) if p]


# --------------------------------------------------------------------------------------------
# The project's code


_KEEP_BODY_MAGICS = ("%%time", "%%timeit", "%%capture")


def _cell_python(cell: str) -> str:
    """A notebook cell as Python, line for line: IPython magics and ``!`` commands become ``pass``."""
    lines = cell.splitlines()
    if lines and lines[0].startswith("%%"):
        if not lines[0].startswith(_KEEP_BODY_MAGICS):
            return ""  # %%bash, %%writefile ...: not Python
        lines[0] = ""
    out = []
    for line in lines:
        body = line.lstrip()
        indent = line[:len(line) - len(body)]
        if body.startswith(("%", "!")) or (body.endswith("?") and not body.startswith("#")):
            line = indent + "pass"
        else:  # x = !ls, t = %timeit -o f()
            line = re.sub(r"^(\s*[\w.,\s]+=\s*)[%!].*$", r"\1None", line)
        out.append(line)
    return "\n".join(out)


def code_sources(root: str | Path) -> Iterator[tuple[str, str]]:
    """``(label, source)`` for ``common/**/*.py`` (the lab modules in ``common/labs/`` included), the
    live TensorRT tests (:data:`TEST_SOURCES`) and each notebook in ``labs/``.

    A notebook is one source: its code cells, each after a ``# %% [cell N]`` marker (N counts all
    cells from 1), so that an import in one cell covers the cells below it.
    """
    root = Path(root)
    for folder in ("common", *TEST_SOURCES):
        for path in sorted((root / folder).rglob("*.py")):
            yield path.relative_to(root).as_posix(), path.read_text(encoding="utf-8")
    for path in sorted((root / "labs").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        parts = []
        for number, cell in enumerate(cells, start=1):
            if cell["cell_type"] == "code":
                text = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                parts.append(f"# %% [cell {number}]\n{_cell_python(text)}")
        yield path.relative_to(root).as_posix(), "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# mypy with the stubs

#: Heavy packages whose imports mypy does not follow: their names become Any, which is all the
#: TensorRT check needs, and following torch alone takes minutes.
_SKIPPED_IMPORTS = ("torch", "torchvision", "onnx", "onnxscript", "onnxruntime", "matplotlib",
                    "modelopt", "cuda", "polygraphy", "IPython")


def run_mypy(paths: Sequence[str | Path], stubs_dir: str | Path,
             cache_dir: str | Path | None = None) -> tuple[int, str]:
    """Type-check ``paths`` with the TensorRT stubs; returns mypy's exit status and report.

    The stubs come first on mypy's search path (``mypy_path`` in a generated config file, the
    equivalent of MYPYPATH without changing this process's environment). ``check_untyped_defs``
    makes mypy check TensorRT calls inside functions that have no annotations too. mypy runs in
    the project root whatever this process's working folder (so ``common`` is found the same way
    from anywhere), and every path in the report is absolute.
    """
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mypy.ini"
        config.write_text("\n".join([
            "[mypy]",
            f"mypy_path = {Path(stubs_dir).resolve()}",
            "ignore_missing_imports = True",
            "follow_imports = silent",
            "check_untyped_defs = True",
            "python_version = 3.10",
            f"cache_dir = {Path(cache_dir or Path(tmp) / 'cache').resolve()}",
            "",
            f"[mypy-{','.join(f'{m}.*' for m in _SKIPPED_IMPORTS)}]",
            "follow_imports = skip",
        ]) + "\n", encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config),
                               *(str(Path(p).resolve()) for p in paths)],
                              cwd=PROJECT_ROOT, capture_output=True, text=True)
    return done.returncode, _absolute_paths(done.stdout + done.stderr, PROJECT_ROOT)


def _absolute_paths(report: str, cwd: Path) -> str:
    """mypy's report with each ``path:line:`` made absolute (mypy prints paths relative to its cwd)."""
    def absolute(match: re.Match[str]) -> str:
        path = Path(match.group(1))
        return f"{path if path.is_absolute() else (cwd / path).resolve()}:"
    return re.sub(r"^([^\s:][^:\n]*\.pyi?):(?=\d+:)", absolute, report, flags=re.M)


# --------------------------------------------------------------------------------------------
# Every supported version: version-guarded code

#: The vendored listings, oldest first: 10.x from the release branches' sources (make_trt_listing.py),
#: 11.4 from the wheel.
LISTING_FILES: dict[str, Path] = {
    **{v: DEFAULT_LISTING.parent / f"tensorrt-{v}-python-api.json" for v in ("10.8", "10.9", "10.10", "10.16")},
    "11.4": DEFAULT_LISTING,
}
VERSIONS = tuple(LISTING_FILES)


def load_listings() -> dict[str, dict[str, Any]]:
    """Every vendored listing, by version ("10.8" ... "11.4")."""
    return {version: load_listing(path) for version, path in LISTING_FILES.items()}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@dataclasses.dataclass(frozen=True)
class _Span:
    start: tuple[int, int]  # (line, column) of the first character
    end: tuple[int, int]  # (line, column) after the last one
    versions: frozenset[str]


class GuardedVersions:
    """Which versions each part of a source runs on, from the ``compat`` guards around it.

    ``compat.is_trt10(trt)``, ``compat.at_least(trt, 10, 9)`` and ``compat.has_aot_plugins(trtp)``
    (and ``not``, ``and``, ``or`` of them) narrow the versions of an ``if`` branch, of an ``else``,
    of a conditional expression's arms, and of the statements after an ``if`` whose body ends in
    ``return`` / ``raise`` / ``continue`` / ``break``. Any other condition narrows nothing.
    """

    def __init__(self, source: str, filename: str, listings: dict[str, dict[str, Any]]):
        self.all = frozenset(listings)
        self.aot = frozenset(v for v, listing in listings.items() if "aot_impl" in listing["tensorrt_plugin_module"])
        self.spans: list[_Span] = []
        self._block(_parse(source, filename).body, self.all)

    def at(self, line: int, col: int) -> frozenset[str]:
        """The versions the code at (line, col) runs on: those of the innermost span around it."""
        inside = [s for s in self.spans if s.start <= (line, col) < s.end]
        return min(inside, key=lambda s: (len(s.versions), -s.start[0], -s.start[1])).versions if inside else self.all

    def _mark(self, node: ast.AST, versions: frozenset[str]) -> None:
        if versions == self.all:
            return
        first = min([node, *getattr(node, "decorator_list", [])], key=lambda n: (n.lineno, n.col_offset))
        self.spans.append(_Span((first.lineno, first.col_offset),
                                (node.end_lineno or node.lineno, node.end_col_offset or 10**6), versions))

    def guard(self, test: ast.expr) -> tuple[frozenset[str], frozenset[str]] | None:
        """(versions where `test` can be true, where it can be false), or None if it tests no version."""
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = self.guard(test.operand)
            return (inner[1], inner[0]) if inner else None
        if isinstance(test, ast.BoolOp):
            parts = [self.guard(v) for v in test.values]
            known = [p for p in parts if p]
            if not known:
                return None
            some_unknown = len(known) < len(parts)
            trues, falses = [p[0] for p in known], [p[1] for p in known]
            if isinstance(test.op, ast.And):
                return frozenset.intersection(*trues), self.all if some_unknown else frozenset.union(*falses)
            return self.all if some_unknown else frozenset.union(*trues), frozenset.intersection(*falses)
        if not isinstance(test, ast.Call):
            return None
        func = test.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name == "is_trt10":
            true = frozenset(v for v in self.all if v.startswith("10."))
        elif name == "at_least":
            numbers = [a.value for a in test.args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, int)]
            if not numbers or len(numbers) != len(test.args) - 1:
                return None
            floor = tuple(numbers) + (0,) * (2 - len(numbers))
            true = frozenset(v for v in self.all if _version(v)[:2] >= floor)
        elif name == "has_aot_plugins":
            true = self.aot
        else:
            return None
        return true, self.all - true

    def _block(self, body: list[ast.stmt], versions: frozenset[str]) -> None:
        for node in body:
            self._mark(node, versions)
            guard = self.guard(node.test) if isinstance(node, ast.If) else None
            if isinstance(node, ast.If) and guard:
                self._block(node.body, versions & guard[0])
                self._block(node.orelse, versions & guard[1])
                self._expressions(node.test, versions)
                if not node.orelse and node.body and isinstance(node.body[-1], (ast.Return, ast.Raise,
                                                                                 ast.Continue, ast.Break)):
                    versions = versions & guard[1]   # the rest of this block runs only where it did not exit
                continue
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    continue
                self._expressions(child, versions)
            for key in ("body", "orelse", "finalbody"):
                children = getattr(node, key, None)
                if isinstance(children, list):
                    self._block([c for c in children if isinstance(c, ast.stmt)], versions)
            for handler in [*getattr(node, "handlers", []), *getattr(node, "cases", [])]:
                self._block(handler.body, versions)

    def _expressions(self, node: ast.AST, versions: frozenset[str]) -> None:
        for child in ast.walk(node):
            if isinstance(child, ast.IfExp):
                guard = self.guard(child.test)
                if guard:
                    self._mark(child.body, versions & guard[0])
                    self._mark(child.orelse, versions & guard[1])


def check_versions(source: str, filename: str, listings: dict[str, dict[str, Any]]) -> list[Problem]:
    """Each TensorRT name against every version the guards around it admit (all five outside any guard)."""
    guards = GuardedVersions(source, filename, listings)
    checkers = {version: _Checker(listing) for version, listing in listings.items()}
    problems = []
    for use in find_trt_uses(source, filename):
        admitted = guards.at(use.line, use.col)
        if not admitted:
            problems.append(Problem(use.where, use.text, "inside guards that no supported version passes"))
            continue
        for version in sorted(admitted, key=_version):
            problem = checkers[version].check(use)
            if problem:
                where = ("outside a version guard, so it must exist in every supported version"
                         if admitted == guards.all else
                         f"inside a version guard admitting {', '.join(sorted(admitted, key=_version))}")
                problems.append(dataclasses.replace(problem, message=f"{problem.message} ({where})"))
                break
    return problems
