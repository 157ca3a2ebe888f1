"""Every document a message names exists: ``docs/X.md``, ``X.md`` beside it, and the sections named
after them (``see README, 'Datasets'``, ``docs/datasets.md, 'DTD-10'``, ``docs/errors.md#anchor``)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

SOURCES = sorted(p for folder in ("algorithms", "common", "data", "experiments", "models", "runner", "tools") for p in (REPO / folder).rglob("*.py"))
SOURCES.append(REPO / "cfg.py")

DOCUMENT = re.compile(r"\b(README(?:\.md)?|(?:docs/)?[a-z_]+\.md)(?:#([a-z0-9-]+))?(?:,? ['\"]([^'\"]+)['\"])?")
# a bare page name (``methods.md``) is a document only in a text that speaks of docs/ (``docs/ (methods.md, ...)``);
# elsewhere it is a file name (a report's ``report.md``)


def strings(path: Path) -> list[str]:
    """The string literals of a module, f-strings' literal parts included (docstrings too)."""
    return [node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def references(text: str) -> list[tuple[str, str | None, str | None]]:
    found = [m.groups() for m in DOCUMENT.finditer(text)]
    return [ref for ref in found if ref[0].startswith(("README", "docs/")) or "docs/" in text]


def document(name: str) -> Path:
    if name.startswith("README"):
        return REPO / "README.md"
    return REPO / name if name.startswith("docs/") else REPO / "docs" / name


def headings(path: Path) -> list[str]:
    return [line.lstrip("#").strip() for line in path.read_text().splitlines() if re.match(r"#{1,6} ", line)]


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_the_scan_reads_references_and_their_sections():
    assert references("see README, 'Datasets'") == [("README", None, "Datasets")]
    assert references("layouts: docs/datasets.md)") == [("docs/datasets.md", None, None)]
    assert references("[docs/errors.md](docs/errors.md#preemption-and-requeue)")[-1] == ("docs/errors.md", "preemption-and-requeue", None)
    assert references("README.md and docs/ (methods.md, clip.md)") == [("README.md", None, None), ("methods.md", None, None), ("clip.md", None, None)]
    assert references("writes report.md") == []
    assert "datasets" not in [anchor(h) for h in headings(REPO / "README.md")]  # the section the old message named


def test_every_document_named_in_the_sources_exists():
    missing = [f"{source.relative_to(REPO)}: {ref}" for source in SOURCES for ref in broken(source)]
    assert not missing


def broken(source: Path) -> list[str]:
    """The references of ``source`` to a file or section that does not exist."""
    missing = []
    for text in strings(source):
        for name, link, section in references(text):
            path = document(name)
            if not path.is_file():
                missing.append(f"{name} (no file {path.relative_to(REPO)})")
                continue
            titles = headings(path)
            if link and link not in [anchor(t) for t in titles]:
                missing.append(f"{name}#{link} (no such heading)")
            if section and section.lower() not in [t.lower() for t in titles]:
                missing.append(f"{name}, {section!r} (no such section)")
    return missing


def test_a_reference_to_a_missing_section_or_page_is_reported(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("raise UserError(f'place them by hand (see README, \\'Datasets\\'), {x} or docs/nowhere.md')\n")
    assert sorted(broken(source)) == ["README, 'Datasets' (no such section)", "docs/nowhere.md (no file docs/nowhere.md)"]
