"""Links between README.md and docs/*.md lead somewhere: the file, and the heading.

Anchors are GitHub's: the heading in lower case, punctuation other than ``-`` and ``_``
dropped, spaces as ``-``. Links inside code blocks are not links.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.docs.blocks import ROOT, pages

LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$", re.MULTILINE)
CODE = re.compile(r"^\s{0,3}```.*?^\s{0,3}```", re.DOTALL | re.MULTILINE)


def anchors(page: Path) -> set[str]:
    text = CODE.sub("", page.read_text(encoding="utf-8"))
    return {
        re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        for heading in HEADING.findall(text)
    }


def broken_links() -> list[str]:
    broken = []
    for page in pages():
        text = CODE.sub("", page.read_text(encoding="utf-8"))
        for link in LINK.findall(text):
            if re.match(r"[a-z]+:", link):  # http:, https:, mailto:
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: {link}"
            if not target.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in anchors(target):
                broken.append(f"{where} (no such heading)")
    return broken


def test_every_link_in_the_docs_leads_somewhere() -> None:
    assert broken_links() == []


def test_the_anchor_rule(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# `graphile-py worker`\n## With the command line's settings\n```\n# not\n```\n"
    )
    assert anchors(page) == {"graphile-py-worker", "with-the-command-lines-settings"}
