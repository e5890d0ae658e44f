"""Write the API listing of one TensorRT release (names and call arity) from NVIDIA/TensorRT's sources.

The course's TensorRT code is checked statically against a listing per supported release
(``tests/trt_api.py``); TensorRT cannot be installed where the tests run, so the listings of 10.x
come from the sources of NVIDIA/TensorRT's ``release/10.N`` branches, read from a local clone:

    python tests/data/make_trt_listing.py /path/to/TensorRT.git release/10.8 > tests/data/tensorrt-10.8-python-api.json

What is read, and how:

* ``python/src/**/*.cpp``, the pybind11 bindings: every ``py::class_`` and ``py::enum_`` with its
  ``.def`` / ``.def_static`` / ``.def_property*`` / ``.def_read*`` / ``.value`` calls, and the
  module's ``m.def`` / ``m.attr``. A method's arity is its ``"name"_a`` / ``py::arg`` arguments (with
  their defaults); without them, the parameters of the bound lambda (``lambdas::f``), of an
  ``overload_cast<...>`` or of the C++ method in ``include/NvInfer*.h`` (unnamed, positional only).
  Where none of these says, the method is listed as ``(*args, **kwargs)``: its name is checked, its
  arity is not (``meta.unknown_arity`` counts them).
* ``#if`` blocks are taken as the wheel is built: ``EXPORT_ALL_BINDINGS`` on,
  ``ENABLE_INETWORK_SERIALIZE`` off, a modern pybind11.
* ``include/NvInfer*.h``: enum member values.
* ``python/packaging/bindings_wheel/tensorrt/__init__.py`` and ``tensorrt/plugin/*.py``: the
  Python-level functions, and the names ``tensorrt.plugin`` exports (``@public_api()``).

The output has the shape of the 11.4 wheel listing (``tensorrt-11.4-python-api.json``), without
types or docstrings, and records the branch and commit it came from. Pure standard library; run
with ``--check-against tests/data/tensorrt-11.4-python-api.json`` on an 11.x branch to compare the
names it finds with the wheel's.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<char>'(?:[^'\\]|\\.)*')
  | (?P<name>(?:::)?[A-Za-z_]\w*(?:::[A-Za-z_~]\w*)*)
  | (?P<number>\d[\w.]*)
  | (?P<op>::|->|&&|\|\||<<|==|!=|<=|>=|[{}()\[\]<>,;.=&*+\-!~?:/%|^])
""", re.VERBOSE)
_TRUE_CONDITIONS = {"EXPORT_ALL_BINDINGS"}
#: What ``py::bind_vector`` gives a class (pybind11/stl_bind.h).
_VECTOR_METHODS = {
    "__init__": ["__init__(self)", "__init__(self, arg0)"], "__getitem__": ["__getitem__(self, arg0)"],
    "__setitem__": ["__setitem__(self, arg0, arg1)"], "__len__": ["__len__(self)"], "__iter__": ["__iter__(self)"],
    "append": ["append(self, x)"], "clear": ["clear(self)"], "extend": ["extend(self, L)"],
    "count": ["count(self, x)"], "remove": ["remove(self, x)"],
    "insert": ["insert(self, i, x)"], "pop": ["pop(self)", "pop(self, i)"],
}
_FALSE_CONDITIONS = {"ENABLE_INETWORK_SERIALIZE"}


def git_show(git_dir: str, ref: str, path: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{ref}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def git_files(git_dir: str, ref: str, under: str) -> list[str]:
    out = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", "--name-only", ref, under],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


# -- C++ text ------------------------------------------------------------------------------------

def strip_comments(text: str) -> str:
    """C++ source without comments (string literals kept)."""
    return re.sub(r'"(?:[^"\\\n]|\\.)*"|//[^\n]*|/\*.*?\*/',
                  lambda m: m.group(0) if m.group(0).startswith('"') else " ", text, flags=re.S)


def preprocess(text: str) -> str:
    """Keep the ``#if`` branches the wheel is built with; drop other directives."""
    out, stack = [], []   # stack of (taking this branch, a branch was taken)
    for line in text.splitlines():
        directive = line.strip()
        if directive.startswith("#if"):
            cond = directive.split(None, 1)[1] if " " in directive else ""
            take = (cond.strip() in _TRUE_CONDITIONS or ("PYBIND11_VERSION" not in cond
                                                         and cond.strip() not in _FALSE_CONDITIONS
                                                         and "_WIN32" not in cond))
            stack.append((take, take))
            line = ""
        elif directive.startswith("#elif") and stack:
            stack[-1] = (False, stack[-1][1])
            line = ""
        elif directive.startswith("#else") and stack:
            stack[-1] = (not stack[-1][1], True)
            line = ""
        elif directive.startswith("#endif") and stack:
            stack.pop()
            line = ""
        elif directive.startswith("#"):
            line = ""
        out.append(line if all(take for take, _ in stack) else "")
    return "\n".join(out)


def tokens(text: str) -> list[str]:
    return [m.group(0) for m in _TOKEN.finditer(text)]


def split_args(toks: list[str], start: int) -> tuple[list[list[str]], int]:
    """Top-level comma-separated arguments of the bracket opening at ``toks[start]``; returns them
    and the index after the closing bracket. A ``<`` opens a bracket only after a name that can be a
    template (one with ``::`` or a ``*_cast``), so comparisons inside inline lambdas do not."""
    pairs = {"(": ")", "{": "}", "[": "]", "<": ">"}
    stack: list[str] = []
    args: list[list[str]] = []
    current: list[str] = []
    for i in range(start, len(toks)):
        t = toks[i]
        opens = t in "({[" or (t == "<" and (i == start or _template_open(toks[i - 1])))
        if opens:
            stack.append(pairs[t])
            if len(stack) > 1:
                current.append(t)
        elif stack and t == stack[-1]:
            stack.pop()
            if not stack:
                if current:
                    args.append(current)
                return args, i + 1
            current.append(t)
        elif t == "," and len(stack) == 1:
            args.append(current)
            current = []
        else:
            current.append(t)
    raise ValueError("unbalanced brackets")


def _template_open(previous: str) -> bool:
    return "::" in previous or previous.endswith("_cast")


# -- the bindings --------------------------------------------------------------------------------

@dataclass
class Cls:
    name: str
    cpp: str
    kind: str
    bases: list[str]
    methods: dict[str, list[str]] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    enum_values: dict[str, str] = field(default_factory=dict)   # python name -> C++ enumerator
    class_attributes: dict[str, str] = field(default_factory=dict)
    exported: bool = False


class Bindings:
    def __init__(self, sources: dict[str, str], headers: str):
        self.text = {path: preprocess(strip_comments(src)) for path, src in sources.items()}
        self.headers = preprocess(strip_comments(headers))
        self.lambdas = self._lambdas()
        self.classes: dict[str, Cls] = {}
        self.by_cpp: dict[str, str] = {}
        self.variables: dict[str, str] = {}
        self.module_functions: dict[str, list[str]] = {}
        self.module_attributes: dict[str, tuple[str, str]] = {}
        self.unknown_arity: list[str] = []

    def _lambdas(self) -> dict[str, list[str]]:
        """Named lambdas and functions defined in the binding sources: name -> parameter texts."""
        found: dict[str, list[str]] = {}
        keywords = {"if", "for", "while", "switch", "catch", "return", "sizeof", "PLUGIN_API_CATCH"}
        for text in self.text.values():
            for m in re.finditer(r"\b(\w+)\s*=\s*\[[^\]]*\]\s*\(", text):
                found.setdefault(m.group(1), _params(text, m.end() - 1))
            for m in re.finditer(r"\b(\w+)\s*\(([^()]*)\)\s*(?:const\s*)?(?:noexcept\s*)?\{", text):
                if m.group(1) not in keywords:
                    found.setdefault(m.group(1), _params(text, m.start(2) - 1))
        return found

    def header_params(self, cls: str, method: str) -> list[list[str]]:
        """Parameter lists of C++ ``cls::method`` declared in the headers (one per overload)."""
        block = _class_block(self.headers, cls.split("::")[-1])
        results = []
        for text in ([block] if block else []):
            for m in re.finditer(rf"\b{re.escape(method)}\s*\(", text):
                before = text[max(0, m.start() - 80):m.start()]
                if re.search(r"(?:return|->|\.|mImpl)\s*$", before):
                    continue   # a call, not a declaration
                results.append(_params(text, m.end() - 1))
        unique = []
        for params in results:
            if params not in unique:
                unique.append(params)
        return unique

    def parse(self) -> None:
        for path, text in self.text.items():
            toks = tokens(text)
            i = 0
            while i < len(toks):
                t = toks[i]
                if t in ("py::class_", "py::enum_") and i + 1 < len(toks) and toks[i + 1] == "<":
                    i = self._binding(toks, i)
                elif t == "py::bind_vector" and toks[i + 1:i + 2] == ["<"]:
                    _, i = split_args(toks, i + 1)
                    args, i = split_args(toks, i)
                    name = _string(args[1]) if len(args) > 1 else None
                    if name:
                        self.classes[name] = Cls(name, "", "class", [], methods=dict(_VECTOR_METHODS))
                elif t in self.variables and i + 1 < len(toks) and toks[i + 1] == ".":
                    i = self._chain(toks, i + 1, self.classes[self.variables[t]])
                elif t == "m" and toks[i + 1:i + 3] == [".", "def"] and toks[i + 3] == "(":
                    args, i = split_args(toks, i + 3)
                    name = _string(args[0])
                    if name:
                        self.module_functions.setdefault(name, []).extend(self._signatures(args, None, False, name))
                elif t == "m" and toks[i + 1:i + 4] == [".", "attr", "("]:
                    args, j = split_args(toks, i + 3)
                    if j < len(toks) and toks[j] == "=" and _string(args[0]):
                        value = toks[j + 1]
                        if "::" in value:
                            enum_cpp, _, member = value.rpartition("::")
                            self.module_attributes[_string(args[0])] = (enum_cpp, member)
                    i = j
                else:
                    i += 1

    def _binding(self, toks: list[str], i: int) -> int:
        kind = "class" if toks[i] == "py::class_" else "enum"
        targs, i = split_args(toks, i + 1)
        cpp = "".join(targs[0])
        variable = None
        if toks[i] not in ("(", "{"):
            variable, i = toks[i], i + 1
        if toks[i] not in ("(", "{"):
            return i
        args, i = split_args(toks, i)
        name = _string(args[1]) if len(args) > 1 else None
        if not name:
            return i
        scope = "".join(args[0])
        owner = self.classes.get(self.variables.get(scope, ""))
        if owner is None and scope != "m":
            owner = next((c for c in self.classes.values() if c.cpp == scope), None)
        qualified = f"{owner.name}.{name}" if owner else name
        bases = [self.by_cpp["".join(a)] for a in targs[1:] if "".join(a) in self.by_cpp]
        cls = self.classes.setdefault(qualified, Cls(qualified, cpp, kind, bases))
        self.by_cpp.setdefault(cpp, qualified)
        if owner:
            owner.class_attributes[name] = f"class:{name}"
        if variable:
            self.variables[variable] = qualified
        return self._chain(toks, i, cls)

    def _chain(self, toks: list[str], i: int, cls: Cls) -> int:
        while i + 1 < len(toks) and toks[i] == "." and toks[i + 2:i + 3] == ["("]:
            method = toks[i + 1]
            args, i = split_args(toks, i + 2)
            self._member(cls, method, args)
        return i

    def _member(self, cls: Cls, method: str, args: list[list[str]]) -> None:
        name = _string(args[0]) if args else None
        if method == "value" and name:
            cls.enum_values[name] = "".join(args[1]) if len(args) > 1 else ""
        elif method == "export_values":
            cls.exported = True
        elif method in ("def", "def_static") and args and args[0][:1] == ["py::init"]:
            cls.methods.setdefault("__init__", []).extend(self._init_signatures(args, cls))
        elif method in ("def", "def_static") and name:
            if name.startswith("__") and name in ("__eq__", "__ne__") and args[1:2] == [["py::self"]]:
                return
            sigs = self._signatures(args, cls, method == "def", name)
            cls.methods.setdefault(name, []).extend(s for s in sigs if s not in cls.methods.get(name, []))
        elif method in ("def_property", "def_readwrite", "def_property_static") and name:
            cls.properties[name] = "read-write"
        elif method in ("def_property_readonly", "def_readonly", "def_property_readonly_static",
                        "def_readonly_static") and name:
            cls.properties.setdefault(name, "read-only")

    def _named(self, args: list[list[str]]) -> list[str] | None:
        """Parameter texts from ``"x"_a`` / ``py::arg("x")`` arguments, or None when there are none."""
        params = []
        for arg in args:
            if len(arg) >= 2 and arg[0].startswith('"') and arg[1] == "_a":
                params.append(arg[0].strip('"') + (" = ..." if "=" in arg[2:3] else ""))
            elif arg[:2] == ["py::arg", "("]:
                default = "=" in arg and arg.index("=") > arg.index(")")
                params.append(arg[2].strip('"') + (" = ..." if default else ""))
        return params or None

    def _signatures(self, args: list[list[str]], cls: Cls | None, bound: bool, name: str) -> list[str]:
        self_ = ["self"] if bound else []
        named = self._named(args[2:])
        if named is not None:
            return [f"{name}({', '.join(self_ + named)})"]
        function = args[1] if len(args) > 1 else []
        for params in self._function_params(function, cls, bound):
            return [f"{name}({', '.join(self_ + [f'arg{k}' for k in range(len(params))])})"]
        self.unknown_arity.append(f"{cls.name if cls else 'tensorrt'}.{name}")
        return [f"{name}(*args, **kwargs)"]

    def _function_params(self, function: list[str], cls: Cls | None, bound: bool) -> Iterator[list[str]]:
        """The Python-visible parameters of a bound C++ callable (self dropped for a method)."""
        text = "".join(function)
        cast = re.search(r"overload_cast<(.*?)>\(", text)
        if cast:
            yield [p for p in _split_types(cast.group(1)) if p]
            return
        inner = re.search(r"&?((?:\w+::)*)(\w+)(?:<[^()]*>)?(?:,|\)|$)", text.replace("utils::deprecateMember(", "")
                          .replace("utils::deprecate(", "").replace("py::cpp_function(", ""))
        if inner is None:
            return
        scope, func = inner.group(1).rstrip(":"), inner.group(2)
        short = scope.split("::")[-1] if scope else ""
        if func in self.lambdas and (not scope or short in ("lambdas", "utils", "")):
            params = self.lambdas[func]
            yield params[1:] if bound and params else params
            return
        if func.startswith("doNothingDel"):
            yield []
            return
        if scope and short not in ("lambdas", "utils", "py"):
            overloads = self.header_params(short, func)
            if len(overloads) == 1:
                yield overloads[0]

    def _init_signatures(self, args: list[list[str]], cls: Cls) -> list[str]:
        init = args[0]
        named = self._named(args[1:])
        if named is not None:
            return [f"__init__(self, {', '.join(named)})" if named else "__init__(self)"]
        if init[1:2] == ["<"]:
            inside = "".join(init[2:init.index(">") if ">" in init else len(init)])
            count = len([p for p in _split_types(inside) if p])
            return [f"__init__(self{''.join(f', arg{k}' for k in range(count))})"]
        body = "".join(init)
        factory = re.search(r"py::init\((?:&?(?:\w+::)*)(\w+)", body)
        if factory and factory.group(1) in self.lambdas:
            params = self.lambdas[factory.group(1)]
            return [f"__init__(self{''.join(f', arg{k}' for k in range(len(params)))})"]
        self.unknown_arity.append(f"{cls.name}.__init__")
        return ["__init__(*args, **kwargs)"]


def _params(text: str, open_at: int) -> list[str]:
    depth, start = 0, open_at + 1
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            inside = text[start:i].strip()
            params = _split_types(inside)
            return [] if params in ([], ["void"]) else params
    return []


def _split_types(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def _class_block(headers: str, name: str) -> str:
    m = re.search(rf"\bclass\s+(?:TRT_\w+\s+)?{re.escape(name)}\b[^;{{]*\{{", headers)
    if not m:
        return ""
    depth = 0
    for i in range(m.end() - 1, len(headers)):
        depth += {"{": 1, "}": -1}.get(headers[i], 0)
        if depth == 0:
            return headers[m.end():i]
    return ""


def _string(arg: list[str]) -> str | None:
    return arg[0].strip('"') if arg and arg[0].startswith('"') and len(arg) == 1 else None


def enum_numbers(headers: str) -> dict[str, dict[str, int]]:
    """``{enum name: {enumerator: value}}`` for every ``enum class`` in the headers."""
    found: dict[str, dict[str, int]] = {}
    for m in re.finditer(r"\benum\s+class\s+(\w+)[^{;]*\{([^}]*)\}", headers):
        values, nxt = {}, 0
        for item in _split_types(m.group(2)):
            name, _, value = item.partition("=")
            name = name.split()[0] if name.split() else ""
            text = value.strip().split()[0] if value.strip() else ""
            if text:
                try:
                    nxt = int(text, 0)
                except ValueError:
                    nxt = values.get(text.split("::")[-1], nxt)
            if name:
                values[name] = nxt
                nxt += 1
        found.setdefault(m.group(1), values)
    return found


# -- Python parts of the wheel ---------------------------------------------------------------------

def _python(source: str) -> ast.Module:
    """A wheel source file; its build-time placeholders (``##TENSORRT_MODULE##``) become a name."""
    return ast.parse(re.sub(r"##\w+##", "placeholder", source))


def python_functions(source: str) -> dict[str, str]:
    tree = _python(source)
    return {n.name: "python: function" for n in tree.body
            if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}


def _signature_text(args: ast.arguments, drop_self: bool) -> str:
    positional = [*args.posonlyargs, *args.args][1 if drop_self else 0:]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    parts = [a.arg + (" = ..." if d is not None else "") for a, d in zip(positional, defaults)]
    if args.vararg:
        parts.append(f"*{args.vararg.arg}")
    parts += [a.arg + (" = ..." if d is not None else "") for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        parts.append(f"**{args.kwarg.arg}")
    return f"({', '.join(parts)})"


def plugin_module(sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """What ``tensorrt.plugin`` exports: ``@public_api()`` functions and classes, and
    ``public_api(symbol=...)(x)`` calls."""
    exported: dict[str, dict[str, Any]] = {}
    for source in sources.values():
        tree = _python(source)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and any(
                    isinstance(d, ast.Call) and getattr(d.func, "id", "") == "public_api" for d in node.decorator_list):
                if isinstance(node, ast.FunctionDef):
                    exported[node.name] = {"type": "function", "signature": _signature_text(node.args, False)}
                else:
                    init = next((b for b in node.body if isinstance(b, ast.FunctionDef) and b.name == "__init__"), None)
                    members = sorted({b.name for b in node.body if isinstance(b, ast.FunctionDef)
                                      and not b.name.startswith("_")})
                    exported[node.name] = {"type": "type", "members": members,
                                           "signature": _signature_text(init.args, True) if init else "()"}
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Call)
                  and getattr(node.func.func, "id", "") == "public_api"):
                symbol = next((k.value.value for k in node.func.keywords if k.arg == "symbol"
                               and isinstance(k.value, ast.Constant)), None)
                if symbol:
                    exported.setdefault(symbol, {"type": "function", "signature": ""})
    return dict(sorted(exported.items()))


# -- the listing -----------------------------------------------------------------------------------

def make_listing(git_dir: str, ref: str, repo: str = "github.com/NVIDIA/TensorRT") -> dict[str, Any]:
    commit = subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", ref], check=True,
                            capture_output=True, text=True).stdout.strip()
    cpp = {p: git_show(git_dir, commit, p) for p in git_files(git_dir, commit, "python/src") if p.endswith(".cpp")}
    header_paths = [p for p in git_files(git_dir, commit, "include") if re.search(r"/NvInfer\w*\.h$", p)]
    headers = "\n".join(git_show(git_dir, commit, p) for p in header_paths)
    version_h = git_show(git_dir, commit, "include/NvInferVersion.h")
    parts = {k: re.search(rf"#define (?:TRT|NV_TENSORRT)_{k}(?:_ENTERPRISE)?\s+(\d+)", version_h)
             for k in ("MAJOR", "MINOR", "PATCH")}
    version = ".".join(m.group(1) for m in parts.values() if m)
    wheel = "python/packaging/bindings_wheel/tensorrt"
    plugin_sources = {p: git_show(git_dir, commit, p) for p in git_files(git_dir, commit, f"{wheel}/plugin")
                      if p.endswith(".py")}

    bindings = Bindings(cpp, headers)
    bindings.parse()
    numbers = enum_numbers(bindings.headers)

    def enum_value(cpp_enum: str, enumerator: str) -> int | None:
        return numbers.get(cpp_enum.split("::")[-1], {}).get(enumerator.split("::")[-1])

    classes: dict[str, Any] = {}
    for name, cls in sorted(bindings.classes.items()):
        entry: dict[str, Any] = {"kind": cls.kind, "bases": cls.bases}
        if cls.kind == "enum":
            entry["enum_values"] = {k: enum_value(cls.cpp, v) for k, v in cls.enum_values.items()}
        else:
            entry["methods"] = {m: {"signatures": sigs} for m, sigs in sorted(cls.methods.items())}
            entry["properties"] = {p: {"access": a} for p, a in sorted(cls.properties.items())}
        classes[name] = entry
    for name, cls in bindings.classes.items():   # nested enums: owner.Severity and, exported, owner.WARNING
        owner, _, inner = name.rpartition(".")
        if owner in classes:
            attributes = classes[owner].setdefault("class_attributes", {})
            attributes[inner] = f"class:{inner}"
            if cls.exported:
                attributes.update({member: inner for member in cls.enum_values})
    module_attributes = {}
    for attr, (cpp_enum, member) in sorted(bindings.module_attributes.items()):
        py_enum = bindings.by_cpp.get(cpp_enum, cpp_enum)
        py_member = next((k for k, v in bindings.classes.get(py_enum, Cls("", "", "", [])).enum_values.items()
                          if v.split("::")[-1] == member), member)
        module_attributes[attr] = f"<{py_enum}.{py_member}: {enum_value(cpp_enum, member) or 0}>"
    module_functions = {n: sigs[0] for n, sigs in sorted(bindings.module_functions.items())}
    module_functions.update(python_functions(git_show(git_dir, commit, f"{wheel}/__init__.py")))
    return {
        "meta": {
            "description": "Python API surface of NVIDIA TensorRT (module `tensorrt`): names and call arity, "
                           "generated by tests/data/make_trt_listing.py from the release branch's sources.",
            "tensorrt_version": version,
            "source": {"repo": repo, "branch": ref.removeprefix("origin/"), "commit": commit,
                       "parsed": sorted(cpp) + header_paths + [f"{wheel}/__init__.py", *sorted(plugin_sources)]},
            "unknown_arity": sorted(set(bindings.unknown_arity)),
            "counts": {"classes_total": len(classes)},
        },
        "module_functions": module_functions,
        "module_attributes": module_attributes,
        "classes": classes,
        "tensorrt_plugin_module": plugin_module(plugin_sources),
        "diff_10_16_source_to_11_4": {"classes_removed": [], "per_class_removed_members": {}, "classes_added": []},
    }


def compare(listing: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Names in one listing and not the other (classes, members, plugin names)."""
    lines = []
    ours, theirs = listing["classes"], reference["classes"]
    for name in sorted(set(ours) ^ set(theirs)):
        lines.append(f"class {name}: only in {'generated' if name in ours else 'reference'}")
    for name in sorted(set(ours) & set(theirs)):
        def members(entry: dict[str, Any]) -> set[str]:
            return {m for key in ("methods", "properties", "enum_values", "class_attributes") for m in entry.get(key, {})}
        a, b = members(ours[name]), members(theirs[name])
        if a != b:
            lines.append(f"{name}: only generated {sorted(a - b)}, only reference {sorted(b - a)}")
    for key in ("module_functions", "module_attributes", "tensorrt_plugin_module"):
        a, b = set(listing[key]), set(reference[key])
        if a != b:
            lines.append(f"{key}: only generated {sorted(a - b)}, only reference {sorted(b - a)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("git_dir", help="a clone of github.com/NVIDIA/TensorRT (its .git folder, or a bare clone)")
    parser.add_argument("branch", help="e.g. release/10.8")
    parser.add_argument("--check-against", help="a listing to compare names with (e.g. the 11.4 wheel's)")
    args = parser.parse_args(argv)
    listing = make_listing(args.git_dir, args.branch)
    if args.check_against:
        with open(args.check_against, encoding="utf-8") as f:
            print("\n".join(compare(listing, json.load(f))) or "same names")
        return 0
    sys.stdout.write(json.dumps(listing, indent=1, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
