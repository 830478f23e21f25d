"""The package's plan, checked: imports run one way, and test-only code stays out of the library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpo"


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def modules(folder: Path = PACKAGE) -> dict[str, set[str]]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts): imported(path)
        for path in sorted(folder.rglob("*.py"))
    }


def within(names: set[str], package: str) -> set[str]:
    return {n for n in names if n == package or n.startswith(package + ".")}


@pytest.mark.parametrize(
    ("module", "imports"), [(m, i) for m, i in modules().items() if not m.startswith("hpo.report")]
)
def test_the_core_never_imports_the_report(module: str, imports: set[str]) -> None:
    allowed = (
        {"hpo.report.writer", "hpo.report.writer.write_report"} if module == "hpo.cli" else set()
    )
    assert within(imports, "hpo.report") <= allowed, f"{module} imports the report"


@pytest.mark.parametrize(
    ("module", "imports"), [(m, i) for m, i in modules().items() if m.startswith("hpo.report.")]
)
def test_the_reports_parts_never_import_its_entry_point(module: str, imports: set[str]) -> None:
    if module != "hpo.report.writer":
        assert not within(imports, "hpo.report.writer"), module


def test_the_library_never_imports_its_test_helpers() -> None:
    users = [m for m, names in modules().items() if within(names, "hpo.testing")]
    assert users == []


@pytest.mark.parametrize(
    "module", ["hpo.model", "hpo.optimizers", "hpo.train", "hpo.pipeline", "hpo.data"]
)
def test_training_knows_nothing_of_optuna(module: str) -> None:
    assert not within(modules()[module], "optuna"), module


def test_the_contract_sees_a_violation(tmp_path: Path) -> None:
    """The checks read real imports, lazy ones included."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from hpo.report import sections\n")
    assert within(imported(source), "hpo.report") == {"hpo.report", "hpo.report.sections"}
