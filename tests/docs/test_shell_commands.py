"""Every shell command in README.md and docs/*.md runs, or is marked as illustrative.

What counts as a shell block: a fenced block whose language is ``shell``, ``sh``,
``bash`` or ``console``, or a block without a language that has a line starting with
``$ `` (a transcript: ``$ `` lines are commands, the lines under each its output).
New pages in docs/ are picked up by themselves.

**The marker.** An HTML comment on the line(s) right above a block's fence (blank lines
between are allowed; nothing else), invisible on GitHub:

- ``<!-- doc-test: illustrative REASON -->``: the block is not run. Give the reason
  (what it needs that this test cannot provide: Node's tasks, a cloud account, minutes
  of benchmarks). Use it for commands that need things the sandbox below does not have.
- ``<!-- doc-test: with-dashboard -->``: ``graphile-py dashboard`` is started first on a
  free port (``127.0.0.1:8787`` in the block points at it, with
  ``GRAPHILE_PY_DASHBOARD_TOKEN`` set), for blocks of ``curl`` calls to its API.

A marker is a line of its own (one quoted in prose is not). An unknown directive, or a
marker with no shell or sql block under it, fails the test. The same markers work
above ``sql`` blocks, which tests/docs/test_sql_blocks.py runs.

**How a block runs.** Each block gets its own copy of a database with graphile-py's
schemas and the example queue the docs show (tests/docs/scene.py), a sandbox
directory as working directory and ``$HOME``, and ``DATABASE_URL`` pointing at the copy.
The sandbox holds ``myapp/tasks.py`` from the README's "In short" and a link to
``examples/``. Commands run one by one through bash (``&&`` chains part by part; ``NAME=``
and ``export`` lines carry over to the next commands), and each must exit 0.
Substitutions, so that the commands can run here:

- every ``postgresql://...`` URL becomes the copy's connection string, and
  ``--embedded`` is dropped (tests/integration/test_embedded.py covers the embedded
  server): the command uses ``DATABASE_URL``;
- ``python3 -m venv DIR`` links DIR to this test's own environment, and ``pip install``
  is not run: its arguments are checked instead (every extra named exists in
  pyproject.toml; graphile-py itself only from a checkout, ``.``, or a built wheel, since
  it is not on a package index yet). tests/packaging builds and installs the wheel for
  real. ``python -m build`` is left to tests/packaging too;
- ``graphile-py worker`` without ``--once`` and ``graphile-py dashboard`` run until
  they are serving (``--metrics-port`` and ``--port`` moved to free ports, and the
  metrics or the page fetched), then get SIGINT and must exit 0;
- in a transcript, the expected output lines with no digit in them (headers, messages;
  digits are ids, times and counts that differ) must appear in the real output, and a
  prompt answered ``[y/N]: y`` gets ``y`` on stdin.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, Block, Command, all_checked_blocks, pages
from tests.support import create_database, drop_database, unique_name

ALL_BLOCKS, MARKER_PROBLEMS = all_checked_blocks()
BLOCKS = [block for block in ALL_BLOCKS if block.is_shell]
RUN = [block for block in BLOCKS if "illustrative" not in block.directives]
URL = re.compile(r"""postgres(?:ql)?://[^\s'"]+""")
EXTRAS = set(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
)
VENV = Path(sys.prefix)
BIN = Path(sys.executable).parent
READY = {
    "worker": "Worker connected and looking for jobs",
    "dashboard": "Uvicorn running on",
}
TOKEN = "doc-test-token"


@dataclass
class Sandbox:
    directory: Path
    dsn: str
    env: dict[str, str]
    prelude: list[str] = field(default_factory=list)

    def script(self, command: str) -> str:
        return "\n".join([*self.prelude, f"exec {command}"])


@pytest.fixture
def sandbox(scene_template: str, tmp_path: Path) -> Iterator[Sandbox]:
    name = unique_name("gpy_docs")
    dsn = create_database(name, template=scene_template)
    home = tmp_path / "sandbox"
    (home / "myapp").mkdir(parents=True)
    (home / "myapp" / "__init__.py").write_text("")
    (home / "myapp" / "tasks.py").write_text(_readme_tasks())
    (home / "examples").symlink_to(ROOT / "examples")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GRAPHILE_PY_", "GRAPHILE_WORKER_", "PG"))
    }
    env.update(
        DATABASE_URL=dsn,
        HOME=str(home),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        GRAPHILE_PY_DASHBOARD_TOKEN=TOKEN,
    )
    try:
        yield Sandbox(home, dsn, env)
    finally:
        drop_database(name)


def _readme_tasks() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"```python\n(# myapp/tasks\.py\n.*?)```", readme, re.DOTALL)
    assert found, "README.md's In short no longer defines myapp/tasks.py"
    return found.group(1)


def test_the_docs_have_shell_blocks_and_markers_with_reasons() -> None:
    assert MARKER_PROBLEMS == []
    assert len(RUN) >= 10
    for block in BLOCKS:
        reason = block.directives.get("illustrative")
        if reason is not None:
            assert len(reason.split()) >= 3, f"{block.where}: say why the block is illustrative"


@pytest.mark.parametrize("block", RUN, ids=[block.where for block in RUN])
def test_shell_block_runs(block: Block, sandbox: Sandbox) -> None:
    dashboard = None
    if "with-dashboard" in block.directives:
        port = _free_port()
        dashboard = _start(sandbox, f"graphile-py dashboard --port {port}", "dashboard", block)
        _fetch(f"http://127.0.0.1:{port}/")
        sandbox.env["DOC_TEST_PORT"] = str(port)
    try:
        for command in block.commands():
            _run_command(block, command, sandbox)
    finally:
        if dashboard is not None:
            _stop(dashboard, block, "graphile-py dashboard")


def _run_command(block: Block, command: Command, sandbox: Sandbox) -> None:
    text = URL.sub(shlex.quote(sandbox.dsn), command.text)
    if "DOC_TEST_PORT" in sandbox.env:
        text = text.replace("127.0.0.1:8787", f"127.0.0.1:{sandbox.env['DOC_TEST_PORT']}")
    text = re.sub(r"\s+#[^'\"]*$", "", text)  # a trailing comment
    for part in (piece.strip() for piece in text.split(" && ")):
        tokens = shlex.split(part, comments=True)
        if not tokens:
            continue
        if re.fullmatch(r"(export\s+)?[A-Za-z_]\w*=.*", part):
            sandbox.prelude.append(part)
            continue
        program = Path(tokens[0]).name
        python_module = tokens[2] if program.startswith("python") and tokens[1:2] == ["-m"] else ""
        if python_module == "venv":
            link = sandbox.directory / tokens[3]
            if not link.exists():
                link.symlink_to(VENV)
            continue
        if program in {"pip", "pip3"} or python_module == "pip":
            _check_pip_install(block, tokens)
            continue
        if python_module == "build":
            continue  # tests/packaging builds the sdist and wheel
        assert python_module != "pytest", f"{block.where}: mark the test command illustrative"
        assert program not in {"npx", "npm", "node"}, (
            f"{block.where}: Node commands need Node's tasks: mark the block"
            " '<!-- doc-test: illustrative REASON -->'"
        )
        runnable = re.sub(r"\s--embedded\b", "", part)
        subcommand = _subcommand(tokens)
        if (subcommand == "worker" and "--once" not in tokens) or subcommand == "dashboard":
            _run_service(block, runnable, subcommand, sandbox)
        else:
            _run_once(block, command, runnable, sandbox)


def _subcommand(tokens: list[str]) -> str | None:
    if Path(tokens[0]).name == "graphile-py":
        rest = tokens[1:]
    elif tokens[1:3] == ["-m", "graphile_py"]:
        rest = tokens[3:]
    else:
        return None
    while rest and rest[0].startswith("-"):
        takes_value = rest[0] in {"--log-level", "--log-format"}
        rest = rest[2:] if takes_value else rest[1:]
    return rest[0] if rest else None


def _run_once(block: Block, command: Command, part: str, sandbox: Sandbox) -> None:
    answers = "y\n" if any(line.endswith("[y/N]: y") for line in command.shown_output) else ""
    result = subprocess.run(
        ["bash", "-c", sandbox.script(part)],
        cwd=sandbox.directory,
        env=sandbox.env,
        input=answers,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"{block.where}: `{part}` exited {result.returncode}:\n{output}\n(If the block needs"
        " what this test cannot provide, mark it '<!-- doc-test: illustrative REASON -->':"
        " see this module's docstring.)"
    )
    assert '"unauthorized"' not in output, f"{block.where}: `{part}` was refused:\n{output}"
    actual = _normal(output)
    for line in command.shown_output:
        if line.strip() and not re.search(r"\d", line):
            assert _normal(line) in actual, (
                f"{block.where}: `{part}` did not print {line.strip()!r}; it printed:\n{output}"
            )


def _normal(text: str) -> str:
    return " ".join(text.split())


def _run_service(block: Block, part: str, subcommand: str, sandbox: Sandbox) -> None:
    url = None
    if "--metrics-port" in part:
        port = _free_port()
        part = re.sub(r"--metrics-port\s+\d+", f"--metrics-port {port}", part)
        url = f"http://127.0.0.1:{port}/metrics"
    if subcommand == "dashboard":
        port = _free_port()
        part = re.sub(r"\s--port\s+\d+", "", part) + f" --port {port}"
        url = f"http://127.0.0.1:{port}/"
    process = _start(sandbox, part, subcommand, block)
    try:
        if url is not None:
            _fetch(url)
    finally:
        _stop(process, block, part)


@dataclass
class Service:
    process: subprocess.Popen[str]
    lines: list[str]
    reader: threading.Thread


def _start(sandbox: Sandbox, part: str, subcommand: str, block: Block) -> Service:
    process = subprocess.Popen(
        ["bash", "-c", sandbox.script(part)],
        cwd=sandbox.directory,
        env=sandbox.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    service = Service(process, lines, reader)
    while not any(READY[subcommand] in line for line in lines):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _stop(service, block, part)
            pytest.fail(f"{block.where}: `{part}` exited or never became ready:\n{''.join(lines)}")
        time.sleep(0.05)
    return service


def _stop(service: Service, block: Block, part: str) -> None:
    service.process.send_signal(signal.SIGINT)
    try:
        status = service.process.wait(40)
    except subprocess.TimeoutExpired:
        service.process.kill()
        pytest.fail(f"{block.where}: `{part}` did not stop on SIGINT")
    finally:
        service.reader.join(5)
        if service.process.stdout is not None:
            service.process.stdout.close()
    assert status == 0, f"{block.where}: `{part}` exited {status}:\n{''.join(service.lines)}"


def _fetch(url: str) -> None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _check_pip_install(block: Block, tokens: list[str]) -> None:
    args = tokens[tokens.index("install") + 1 :]
    for arg in args:
        if arg.startswith("-"):
            continue  # -e, -q, -U: the requirement comes next
        match = re.fullmatch(r"(?P<what>[^\[\s]+)(?:\[(?P<extras>[\w,-]+)\])?(?P<rest>.*)", arg)
        assert match, f"{block.where}: cannot read pip requirement {arg!r}"
        what, extras = match.group("what"), match.group("extras") or ""
        is_ours = what in {"graphile-py", "graphile_py"}
        local = what == "." or what.endswith(".whl") or what.startswith(("./", "/"))
        if is_ours:
            assert "@" in match.group("rest"), (
                f"{block.where}: {arg!r} needs graphile-py on a package index, and it is not"
                " on one yet: install from a checkout (pip install -e '.[extra]') or a built"
                " wheel ('dist/graphile_py-0.1.0-py3-none-any.whl[extra]')"
            )
        if is_ours or local:
            for extra in filter(None, extras.split(",")):
                assert extra in EXTRAS, f"{block.where}: pyproject.toml has no extra {extra!r}"


def test_no_page_installs_graphile_py_from_a_package_index() -> None:
    # Inline code is not run, so check it here: `pip install 'graphile-py[x]'` fails
    # until a release is on an index (blocks are checked by _check_pip_install).
    wrong = re.compile(r"pip install\s+['\"]?graphile-py(\[|\b)(?![^`\n]*@)")
    found = [
        f"{page.relative_to(ROOT)}:{number}"
        for page in pages()
        for number, line in enumerate(page.read_text().splitlines(), start=1)
        if wrong.search(line)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("command", "accepted"),
    [
        ("pip install 'graphile-py[dashboard]'", False),
        ("pip install graphile-py", False),
        ("pip install -e '.[nosuchextra]'", False),
        ("pip install -e '.[dashboard,metrics]'", True),
        ("pip install './dist/graphile_py-0.1.0-py3-none-any.whl[dashboard]'", True),
        (
            "pip install 'graphile-py[metrics] @ file:///tmp/graphile_py-0.1.0-py3-none-any.whl'",
            True,
        ),
        ("python -m pip install build", True),
    ],
)
def test_the_pip_install_check(command: str, accepted: bool) -> None:
    block = Block("example.md", 1, "shell", command)
    try:
        _check_pip_install(block, shlex.split(command))
    except AssertionError:
        assert not accepted
    else:
        assert accepted


def test_markers_are_found_and_mistakes_in_them_reported(tmp_path: Path) -> None:
    from tests.docs import blocks

    page = tmp_path / "page.md"
    page.write_text(
        "Prose that quotes `<!-- doc-test: illustrative not a marker here -->`.\n\n"
        "<!-- doc-test: illustrative needs a cloud account to run -->\n\n"
        "```shell\naws s3 ls\n```\n\n"
        "<!-- doc-test: ilustrative a typo -->\n```bash\necho hi\n```\n\n"
        "<!-- doc-test: illustrative nothing under it -->\nSome text.\n\n"
        "```\n$ graphile-py status\n5 jobs\n```\n"
    )
    problems: list[str] = []
    original = blocks.ROOT
    blocks.ROOT = tmp_path
    try:
        found = blocks.checked_blocks(page, problems)
    finally:
        blocks.ROOT = original
    assert [(b.line, b.language, b.directives) for b in found] == [
        (5, "shell", {"illustrative": "needs a cloud account to run"}),
        (10, "bash", {"ilustrative": "a typo"}),
        (17, "", {}),
    ]
    assert found[2].commands() == [Command("graphile-py status", ("5 jobs",))]
    assert len(problems) == 2
    assert "unknown doc-test directive 'ilustrative'" in problems[0]
    assert "page.md:14: a doc-test marker with no block under it" in problems[1]
