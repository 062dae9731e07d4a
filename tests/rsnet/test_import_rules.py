"""The layering of the packages is a test: lint-imports checks the contracts in pyproject.toml, and
the package's module graph has no import circle."""
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()", "--no-cache"],
                          cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": ""})


def test_the_contracts_are_kept():
    linted = _lint_imports(ROOT)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "0 broken" in linted.stdout


def test_a_wrong_import_breaks_its_contract_by_name(tmp_path):
    """The model importing the data (a copy of the package with that one line added) fails the
    model's contract, named as pyproject.toml names it, and the layers."""
    for package in ("rsnet", "rs_kernels", "bench"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    model = tmp_path / "rsnet" / "model" / "rskp.py"
    model.write_text(model.read_text().replace("from ..config import Config\n",
                                               "from ..config import Config\nfrom ..data import Annotations  # noqa\n"))
    linted = _lint_imports(tmp_path)
    assert linted.returncode == 1
    assert "the model imports no dataset, checkpoint, trainer or command BROKEN" in linted.stdout
    assert "rsnet.model.rskp -> rsnet.data" in linted.stdout


def _cycle(graph: grimp.ImportGraph, modules: set[str]) -> list[str] | None:
    """One import circle among ``modules`` (depth-first search), or None."""
    state, stack = {}, []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module) & modules):
            if state.get(imported) == "open":
                return stack[stack.index(imported):] + [imported]
            if imported not in state and (found := visit(imported)):
                return found
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(modules):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_circle_in_the_package():
    graph = grimp.build_graph("rsnet")
    modules = {m for m in graph.modules if m.startswith("rsnet")}
    assert _cycle(graph, modules) is None, " -> ".join(_cycle(graph, modules))
    # and the search finds one where there is one
    graph.add_import(importer="rsnet.config", imported="rsnet.train")
    assert _cycle(graph, modules) is not None
