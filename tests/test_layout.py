"""The package's layout rules, checked mechanically (COURSE_DESIGN §3, STYLE 'Layout and shared code').

- a lab module imports shared modules and common.trt only, never another lab module;
- common/trt (plumbing) and the shared modules never import a lab module;
- one tolerance table (common.checks.TOLERANCE);
- every claims function of a lab module is exercised by that lab's tests;
- notebooks import their lab module as `lab`, use no other ad-hoc aliases, keep code cells short and
  their sources free of test machinery (nbval's markers live in cell metadata).
"""

import ast
import json
import re
from pathlib import Path

import pytest

from common.env import project_root

ROOT = project_root()
COMMON = ROOT / "common"
LABS_PACKAGE = COMMON / "labs"
NOTEBOOKS = sorted((ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))
MAX_CELL_LINES = 25
#: Aliases a notebook may use: the lab module, and the ONNX helpers (whose name clashes with onnx).
ALLOWED_ALIASES = {"lab", "onnx_tools"}


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _lab_of(path: Path) -> str | None:
    """'lab01_batching' for any file inside that lab's module or package."""
    try:
        rel = path.relative_to(LABS_PACKAGE)
    except ValueError:
        return None
    name = rel.parts[0].removesuffix(".py")
    return name if name.startswith("lab") else None


def _imported_modules(path: Path) -> list[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.append(module)
            names += [f"{module}.{a.name}" for a in node.names]
    return names


def _lab_imports(path: Path) -> set[str]:
    return {m.split(".")[2] for m in _imported_modules(path)
            if m.startswith("common.labs.") and len(m.split(".")) > 2 and m.split(".")[2].startswith("lab")}


@pytest.mark.parametrize("path", _python_files(LABS_PACKAGE), ids=lambda p: str(p.relative_to(COMMON)))
def test_a_lab_module_never_imports_another_lab(path):
    own = _lab_of(path)
    assert _lab_imports(path) <= ({own} if own else set()), f"{path.name} imports another lab's module"


@pytest.mark.parametrize("path", [p for p in _python_files(COMMON) if _lab_of(p) is None
                                  and "exercises" not in p.parts and "advise" not in p.parts],
                         ids=lambda p: str(p.relative_to(COMMON)))
def test_shared_modules_and_trt_never_import_a_lab(path):
    assert not _lab_imports(path), f"{path.relative_to(ROOT)} imports a lab module: plumbing never reaches up"


def test_old_flat_lab_modules_are_gone():
    old = ["batching", "streams", "cudagraphs", "shapes", "fusion", "reduce_shuffle", "matmul_alignment",
           "precision", "quantization", "sparsity", "builder", "plugin_kernels"]
    assert not [name for name in old if (COMMON / f"{name}.py").exists()]
    assert not [name for name in ("builder_study", "plugin_variants") if (COMMON / "trt" / f"{name}.py").exists()]


def test_one_tolerance_table():
    tables = []
    for path in _python_files(COMMON):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            tables += [f"{path.relative_to(ROOT)}: {t.id}" for t in targets
                       if isinstance(t, ast.Name) and "TOLERANCE" in t.id]
    assert tables == ["common/checks.py: TOLERANCE"], tables


def _claims_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.endswith("claims")
            and not n.name.startswith("_")]


def _lab_modules() -> list[str]:
    return sorted({_lab_of(p) for p in _python_files(LABS_PACKAGE)} - {None})


@pytest.mark.parametrize("lab", _lab_modules())
def test_every_claims_function_is_tested(lab):
    files = [p for p in _python_files(LABS_PACKAGE) if _lab_of(p) == lab]
    functions = [f for p in files for f in _claims_functions(p)]
    assert functions, f"{lab} exposes no claims function"
    tests = "\n".join(p.read_text() for p in (ROOT / "tests" / "labs").glob(f"test_{lab}*.py"))
    untested = [f for f in functions if not re.search(rf"\b{f}\(", tests)]
    assert not untested, f"{lab}: claims functions without a test calling them: {untested}"


def _code_cells(nb: Path) -> list[tuple[int, str]]:
    cells = json.loads(nb.read_text())["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_cells_are_short_and_free_of_test_machinery(nb):
    long = [(i, len(src.splitlines())) for i, src in _code_cells(nb) if len(src.splitlines()) > MAX_CELL_LINES]
    assert not long, f"{nb.name}: cells over {MAX_CELL_LINES} lines (cell, lines): {long}"
    marked = [i for i, src in _code_cells(nb) if "NBVAL" in src]
    assert not marked, f"{nb.name}: nbval markers in the source of cells {marked}: use cell metadata tags"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_its_lab_module_as_lab_and_no_other_alias(nb):
    sources = "\n".join(src for _, src in _code_cells(nb))
    module = f"lab{nb.stem}"
    if (LABS_PACKAGE / f"{module}.py").exists() or (LABS_PACKAGE / module).is_dir():
        assert f"from common.labs import {module} as lab" in sources, f"{nb.name} does not import {module} as lab"
    aliases = set(re.findall(r"^\s*(?:from\s+\S+\s+)?import\s+.*\bas\s+(\w+)", sources, flags=re.M))
    assert aliases <= ALLOWED_ALIASES, f"{nb.name}: ad-hoc aliases {sorted(aliases - ALLOWED_ALIASES)}"
