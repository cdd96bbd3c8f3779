"""Every Python code block in the README and docs/ is valid Python.

Blocks fenced as ```python are compiled (dedented, top-level ``await`` allowed); reference
signatures that are not meant to run are fenced as ```text instead.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            found.append((str(page.relative_to(ROOT)), line, textwrap.dedent(match.group(2))))
    return found


def test_the_docs_have_python_examples() -> None:
    assert len(_blocks()) > 20


@pytest.mark.parametrize(("page", "line", "code"), _blocks(), ids=lambda v: str(v)[:40])
def test_block_compiles(page: str, line: int, code: str) -> None:
    try:
        compile(code, f"{page}:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError as exc:
        pytest.fail(f"{page}, block at line {line}: {exc}")
