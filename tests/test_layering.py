"""The packages' floors: each imports only the packages below it, so there are no package-level cycles.

benchmarks -> export -> quant -> model (mvit.export.apps belongs to export). Read from the sources' import
statements, wherever they sit (module top or inside a function), relative or absolute; imports under
``if TYPE_CHECKING:`` name a type and load nothing, so they do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ["model", "quant", "export", "benchmarks"]  # lowest first


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (type-only imports load nothing)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imported_packages(path: Path, package: list[str]) -> set[str]:
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
                names = [target + [a.name] for a in node.names] if not node.module else [target]
            else:
                names = [(node.module or "").split(".")]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        else:
            continue
        for parts in names:
            if len(parts) > 1 and parts[0] == "mvit" and parts[1] in FLOORS:
                found.add(parts[1])
    return found


def test_each_package_imports_only_the_floors_below_it():
    upward = []
    for floor, name in enumerate(FLOORS):
        for path in sorted((ROOT / name).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] in (("benchmarks", "studies"), ("benchmarks", "article")):
                continue  # scripts run by path, above everything
            package = ["mvit", *rel.parts[:-1]]
            for target in _imported_packages(path, package):
                if FLOORS.index(target) > floor:
                    upward.append(f"{rel} imports mvit.{target}")
    assert not upward, upward


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ..quant.qat import train_qat\n")
    assert _imported_packages(bad, ["mvit", "model"]) == {"quant"}
    typed = tmp_path / "typed.py"
    typed.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..export.base import ExportJob\n")
    assert _imported_packages(typed, ["mvit", "quant"]) == set()
