"""Every link in the repository's Markdown resolves inside the repository.

The contract the code cites is docs/contract.md; a link that leaves the checkout (to a
sibling folder, say) is broken on the project's own page and in every clone.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# [text](target) and [text]: target, outside code spans; images too.
INLINE = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s+(\S+)", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def _markdown_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode == 0 and listed.stdout.strip():
        return [ROOT / line for line in listed.stdout.splitlines() if (ROOT / line).exists()]
    return sorted(p for p in ROOT.rglob("*.md") if ".venv" not in p.parts)


def _links(text: str) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    return INLINE.findall(text) + REFERENCE.findall(text)


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.*)$", FENCE.sub("", text), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


MARKDOWN = _markdown_files()


def test_there_is_markdown_to_check():
    assert any(path.name == "contract.md" for path in MARKDOWN)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(path):
    text = path.read_text()
    broken = []
    for link in _links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link):  # https:, mailto: - citations, not files
            continue
        target, _, anchor = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{link} leaves the repository")
        elif not resolved.exists():
            broken.append(f"{link} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved.read_text()):
            broken.append(f"{link}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert not broken, broken


def test_the_contract_cited_is_the_repositorys_own():
    """Code, tests and docs cite docs/contract.md, never the outside reference."""
    outside = "shared/" + "CONTRACT"  # split, or this line would be the one found
    listed = subprocess.run(  # noqa: S603 - a fixed git command, no outside input
        ["git", "grep", "-n", "-I", outside, "--", ".", ":!docs/contract.md"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode in {0, 1}, listed.stderr
    assert listed.stdout == "", listed.stdout
