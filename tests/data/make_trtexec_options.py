"""Write the list of trtexec options of one TensorRT release from NVIDIA/TensorRT's sources.

``common.trt.trtexec`` prints the trtexec equivalent of the engines the labs build; the CPU tests
check every flag it can emit against this list, so that a printed command names only options that
the release's trtexec parses. The list is read from ``samples/common/sampleOptions.cpp`` of a local
clone, at the ref of the release and at the ref of the previous major release:

    python tests/data/make_trtexec_options.py /path/to/TensorRT.git release/11.1 \\
        --previous release/10.16 > tests/data/trtexec-options-11.json

What is extracted, and how (pure standard library):

* ``options``: every string literal that is exactly an option name (``"--onnx"``) inside the
  functions that take the command line (``Arguments&``): the parse functions that trtexec's
  ``AllOptions::parse`` runs and their helpers, not those of the safe builder or of per-task
  inference. A literal is an option name only where it stands alone, so the options that messages
  mention are not counted.
* ``documented``: whether the help functions list the option (an entry line ``"  --name ..."``).
* ``deprecated``: the option's own help entry line says ``[Deprecated]``, or a message in the file
  starts with the option name followed by a word (not ``=``) and says "deprecated".
  ``replaced_by``: the ``--option`` that such a message says to use instead.
* ``deprecated_values``: messages anywhere in the file that start ``--name=value`` and say
  "deprecated".
* ``removed``: the options that the previous release's parse functions read and this one's do not.

Only option names, values and these booleans are written, with the refs and commits they came from.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

SOURCE = "samples/common/sampleOptions.cpp"
VERSION_HEADER = "include/NvInferVersion.h"
#: Option classes in the same file that belong to other tools (the safe builder, per-task inference).
OTHER_TOOLS = ("SafeBuilderOptions::", "TaskInferenceOptions::")
#: The help functions of trtexec's options (what ``AllOptions::help`` prints).
HELP_FUNCTIONS = ("BaseModelOptions::help", "ModelOptions::help", "BuildOptions::help",
                  "SystemOptions::help", "TuningOptions::help", "InferenceOptions::help",
                  "ReportingOptions::help", "helpHelp", "AllOptions::help")

_DEFINITION = re.compile(r"^[A-Za-z][\w:<>&*, ]*?\b([A-Za-z_][\w:]*)\(([^;{]*?)\)[^;{)]*\{", re.MULTILINE)
_OPTION_LITERAL = re.compile(r'"(--[A-Za-z][A-Za-z0-9]*)"')
_HELP_ENTRY = re.compile(r'"  (--[A-Za-z][A-Za-z0-9]*)([^"]*)"')
_MESSAGE = re.compile(r'"(--[A-Za-z][A-Za-z0-9]*)(=[A-Za-z0-9_+]+)?( [^"]*)"')
_USE_INSTEAD = re.compile(r"use (--[A-Za-z][A-Za-z0-9]*)")


def git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True,
                          capture_output=True, text=True).stdout


def definitions(source: str) -> dict[str, tuple[str, str]]:
    """Each top-level function definition: name -> (parameters, body)."""
    return {m.group(1): (m.group(2), body(source, m.end())) for m in _DEFINITION.finditer(source)}


def body(source: str, start: int) -> str:
    """The text from `start`, just after an opening brace, to its closing brace."""
    depth = 1
    i = start
    while depth:  # skipping comments, strings and characters, whose braces do not count
        if source.startswith('R"(', i):
            i = source.index(')"', i + 3) + 2
            continue
        c = source[i]
        if source.startswith("//", i):
            i = source.index("\n", i)
            continue
        if source.startswith("/*", i):
            i = source.index("*/", i) + 2
            continue
        if c == '"':
            i += 1
            while source[i] != '"':
                i += 2 if source[i] == "\\" else 1
        elif c == "'":
            i = source.index("'", i + (3 if source[i + 1] == "\\" else 2)) + 1
            continue
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        i += 1
    return source[start:i - 1]


def parsed_options(source: str) -> set[str]:
    """The options that trtexec's parse functions, and the helpers they call, read."""
    parsers = [text for name, (params, text) in definitions(source).items()
               if "Arguments&" in params and not name.startswith(OTHER_TOOLS)]
    return set(_OPTION_LITERAL.findall("\n".join(parsers)))


def extract(source: str) -> dict:
    options = parsed_options(source)
    functions = definitions(source)
    help_text = "\n".join(functions[f][1] for f in HELP_FUNCTIONS if f in functions)
    documented = {m.group(1): "[Deprecated]" in m.group(2) for m in _HELP_ENTRY.finditer(help_text)}
    deprecated: dict[str, str | None] = {name: None for name, dep in documented.items() if dep}
    deprecated_values: dict[str, set[str]] = {}
    for m in _MESSAGE.finditer(source):  # value checks live in helpers outside the parse functions
        name, value, rest = m.group(1), m.group(2), m.group(3)
        if name not in options or "deprecated" not in rest:
            continue
        if value:
            deprecated_values.setdefault(name, set()).add(value[1:])
        else:
            use = _USE_INSTEAD.search(rest)
            deprecated[name] = use.group(1) if use else deprecated.get(name)
    table = {}
    for name in sorted(options, key=str.lower):
        entry: dict = {"documented": name in documented, "deprecated": name in deprecated}
        if deprecated.get(name):
            entry["replaced_by"] = deprecated[name]
        if name in deprecated_values:
            entry["deprecated_values"] = sorted(deprecated_values[name])
        table[name] = entry
    return {"options": table}


def version(git_dir: str, ref: str) -> str:
    header = git(git_dir, "show", f"{ref}:{VERSION_HEADER}")
    parts = [re.search(rf"#define TRT_{k}_ENTERPRISE (\d+)", header) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(p.group(1) for p in parts if p)


def describe(git_dir: str, ref: str) -> dict:
    return {"ref": ref, "commit": git(git_dir, "rev-parse", f"{ref}^{{commit}}").strip(),
            "blob": git(git_dir, "rev-parse", f"{ref}:{SOURCE}").strip(), "tensorrt": version(git_dir, ref)}


def make_options(git_dir: str, ref: str, previous: str) -> dict:
    """The options of the release at `ref`, with those removed since the release at `previous`."""
    current = extract(git(git_dir, "show", f"{ref}:{SOURCE}"))
    before = parsed_options(git(git_dir, "show", f"{previous}:{SOURCE}"))
    return {
        "source": {"repository": "NVIDIA/TensorRT", "path": SOURCE, **describe(git_dir, ref),
                   "generator": "tests/data/make_trtexec_options.py"},
        "previous": describe(git_dir, previous),
        **current,
        "removed": sorted(before - set(current["options"]), key=str.lower),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("git_dir", help="a clone of NVIDIA/TensorRT (its .git directory)")
    parser.add_argument("ref", help="the release's branch or commit, e.g. release/11.1")
    parser.add_argument("--previous", required=True, help="the previous major release, e.g. release/10.16")
    args = parser.parse_args(argv)
    json.dump(make_options(args.git_dir, args.ref, args.previous), sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0

if __name__ == "__main__":
    sys.exit(main())
