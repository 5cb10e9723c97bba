"""Helpers shared by the demo-app tests (not a pytest conftest: imported explicitly)."""

from __future__ import annotations

import filecmp
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ANDROID = ROOT / "android_demo"
IOS = ROOT / "ios_demo"
GOLDEN_DIRS = (
    ANDROID / "core" / "src" / "test" / "resources" / "golden",
    IOS / "ClassifierCore" / "Tests" / "ClassifierCoreTests" / "Resources" / "golden",
)


def syntax_errors(language, path: Path) -> list[str]:
    """ERROR / MISSING nodes of a tree-sitter parse, as 'file:line:col: type' strings."""
    import tree_sitter

    parser = tree_sitter.Parser(tree_sitter.Language(language))
    tree = parser.parse(path.read_bytes())
    bad: list[str] = []
    stack = [tree.root_node]
    while stack:
        n = stack.pop()
        if n.is_error or n.is_missing:
            bad.append(
                f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:"
                f"{n.start_point[0] + 1}:{n.start_point[1] + 1}: {'missing ' if n.is_missing else ''}{n.type}"
            )
            continue
        stack.extend(n.children)
    return bad


def same_tree(a: Path, b: Path) -> list[str]:
    """Files that differ between two folders (names relative to them)."""
    cmp = filecmp.dircmp(a, b)
    diff = list(cmp.left_only) + list(cmp.right_only) + list(cmp.diff_files)
    for sub in cmp.common_dirs:
        diff += [f"{sub}/{x}" for x in same_tree(a / sub, b / sub)]
    return diff
