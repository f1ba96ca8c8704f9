"""Finding the shell commands of README.md and docs/*.md (see test_shell_commands.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Fence languages whose blocks are shell commands.
SHELL_LANGUAGES = frozenset({"shell", "sh", "bash", "console", "shell-session"})
#: The marker's directives: the first word after ``doc-test:``.
DIRECTIVES = frozenset({"illustrative", "with-dashboard"})

FENCE = re.compile(r"^\s{0,3}(?P<fence>```+|~~~+)\s*(?P<info>.*)$")
MARKER = re.compile(r"<!--\s*doc-test:\s*(?P<directive>[\w-]+)\s*(?P<rest>.*?)\s*-->")
PROMPT = "$ "


@dataclass(frozen=True)
class Command:
    """One command of a block, and (in a transcript) the output shown under it."""

    text: str
    shown_output: tuple[str, ...] = ()


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    body: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.language in SHELL_LANGUAGES or (self.language == "" and self.transcript)

    @property
    def transcript(self) -> bool:
        return any(line.startswith(PROMPT) for line in self.body.splitlines())

    def commands(self) -> list[Command]:
        """The commands, with backslash continuations joined and comment lines dropped."""
        commands: list[Command] = []
        lines = self.body.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if self.transcript and not line.startswith(PROMPT):
                continue  # output, collected below
            text = line.removeprefix(PROMPT) if self.transcript else line
            while text.rstrip().endswith("\\") and i < len(lines):
                text = text.rstrip()[:-1] + " " + lines[i].strip()
                i += 1
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            output: list[str] = []
            if self.transcript:
                while i < len(lines) and not lines[i].startswith(PROMPT):
                    output.append(lines[i])
                    i += 1
            commands.append(Command(text.strip(), tuple(output)))
        return commands


def pages() -> list[Path]:
    """Every page whose commands are checked: README.md and docs/*.md, new ones too."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def checked_blocks(page: Path, problems: list[str]) -> list[Block]:
    """The shell and sql blocks of one page, with the markers placed right above them.

    A block is a shell block when its fence says so (``shell``, ``sh``, ``bash``,
    ``console``) or, with no language, when a line starts with ``$ ``. A marker belongs
    to the next fence, with only blank lines or other markers between them; a marker
    with an unknown directive, or that no shell or sql block follows, is added to
    ``problems``.
    """
    name = page.relative_to(ROOT).as_posix()
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    pending_line = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        # Only a line that is nothing but markers: one quoted in prose is not a marker.
        markers = list(MARKER.finditer(line))
        if markers and not MARKER.sub("", line).strip():
            for marker in markers:
                directive = marker.group("directive")
                if directive not in DIRECTIVES:
                    problems.append(
                        f"{name}:{i + 1}: unknown doc-test directive {directive!r};"
                        f" known: {', '.join(sorted(DIRECTIVES))}"
                    )
                pending[directive] = marker.group("rest")
            pending_line = i + 1
            i += 1
            continue
        if fence is None:
            if line.strip() and pending:
                problems.append(f"{name}:{pending_line}: a doc-test marker with no block under it")
                pending = {}
            i += 1
            continue
        close = fence.group("fence")
        end = i + 1
        while end < len(lines) and not lines[end].lstrip().startswith(close):
            end += 1
        language = (fence.group("info").split() or [""])[0].lower()
        body = "\n".join(lines[i + 1 : end])
        block = Block(name, i + 1, language, body, dict(pending))
        if block.is_shell or language == "sql":
            blocks.append(block)
        elif pending:
            problems.append(
                f"{name}:{pending_line}: a doc-test marker above a block that is neither a"
                f" shell nor an sql block ({language or 'no language'})"
            )
        pending = {}
        i = end + 1
    return blocks


def all_checked_blocks() -> tuple[list[Block], list[str]]:
    """Every page's shell and sql blocks, and the problems with markers found on the way."""
    problems: list[str] = []
    return [block for page in pages() for block in checked_blocks(page, problems)], problems
