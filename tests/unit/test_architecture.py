"""The folder tree is the architecture: imports point one way, and the extras stay optional.

A small AST check over every module of the package (so it needs none of the extras
installed): each module belongs to a layer, and may import only its own layer or lower
ones. Imports under ``if TYPE_CHECKING:`` count too, since a type-only import that runs
back up is still a cycle in the design. Import statements inside functions count as well.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import graphile_py

PACKAGE_ROOT = Path(graphile_py.__file__).parent

# Lowest first. A module may import modules of its own layer or of a lower one. Within a
# layer, separate wings (pool and admin, or two extras) must not import each other.
LAYERS: list[tuple[str, list[str]]] = [
    ("errors", ["graphile_py.errors"]),
    ("core types", ["graphile_py.jobs", "graphile_py.logs"]),
    ("events", ["graphile_py.events"]),
    ("db", ["graphile_py.db"]),
    ("enqueue", ["graphile_py.enqueue"]),
    ("typed payloads", ["graphile_py.typed"]),
    ("tasks", ["graphile_py.tasks"]),
    ("cron", ["graphile_py.cron"]),
    ("pool and admin", ["graphile_py.pool", "graphile_py.admin"]),
    (
        "extras",
        [
            "graphile_py.extras.metrics",
            "graphile_py.extras.dashboard",
            "graphile_py.extras.embedded",
            "graphile_py.extras",
        ],
    ),
    (
        "program assembly",
        ["graphile_py.runner", "graphile_py.settings"],
    ),
    # Integrations with other people's frameworks (Django, SQLAlchemy, FastAPI, pytest,
    # OpenTelemetry): each its own wing on top of the library, never imported by it.
    (
        "integrations",
        [
            "graphile_py.contrib.django",
            "graphile_py.contrib.sqlalchemy",
            "graphile_py.contrib.fastapi",
            "graphile_py.contrib.pytest",
            "graphile_py.contrib.otel",
            "graphile_py.contrib",
        ],
    ),
    ("cli", ["graphile_py.cli", "graphile_py.__main__", "graphile_py"]),
]

#: The only modules that assemble a program, and so the only ones that may import an extra.
EXTRA_IMPORTERS = ("graphile_py.cli", "graphile_py.runner", "graphile_py", "graphile_py.contrib")
EXTRAS = "graphile_py.extras"


@dataclass(frozen=True)
class Placement:
    layer: int
    wing: str


def _is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def placement(module: str) -> Placement:
    """The layer and wing of a module: the longest matching prefix wins."""
    best: tuple[int, int, str] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # The package itself (its __init__) is the top; it is no catch-all for the rest.
            matches = module == prefix if prefix == "graphile_py" else _is_within(module, prefix)
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix), prefix)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in this test")
    return Placement(layer=best[0], wing=best[2])


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = PACKAGE_ROOT) -> list[tuple[int, str]]:
    """(line, module) for every graphile_py module that ``path`` imports, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    this = module_name(path, root)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from graphile_py.db import retry`` imports the submodule graphile_py.db.retry.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if (root.parent / Path(*candidate.split("."))).with_suffix(".py").exists():
                    found.append((node.lineno, candidate))
    return [(line, name) for line, name in found if _is_within(name, "graphile_py")]


def package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE_ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer() -> None:
    for path in package_modules():
        placement(module_name(path))


def layer_problems(paths: list[Path], root: Path = PACKAGE_ROOT) -> list[str]:
    problems: list[str] = []
    for path in paths:
        importer = module_name(path, root)
        mine = placement(importer)
        for line, imported in imported_modules(path, root):
            theirs = placement(imported)
            where = f"{path.relative_to(root.parent)}:{line}"
            if theirs.layer > mine.layer:
                problems.append(
                    f"{where}: {importer} ({LAYERS[mine.layer][0]}) imports {imported}"
                    f" ({LAYERS[theirs.layer][0]}), a higher layer"
                )
            elif (
                theirs.layer == mine.layer
                and LAYERS[mine.layer][0] != "cli"
                and not _is_within(theirs.wing, mine.wing)
                and not _is_within(mine.wing, theirs.wing)
            ):
                problems.append(f"{where}: {importer} imports {imported} across wings")
    return problems


def test_no_import_runs_up_a_layer_or_across_wings() -> None:
    assert layer_problems(package_modules()) == []


def test_only_the_program_assemblers_import_an_extra() -> None:
    problems: list[str] = []
    for path in package_modules():
        importer = module_name(path)
        if _is_within(importer, EXTRAS):
            continue
        if any(
            importer == allowed if allowed == "graphile_py" else _is_within(importer, allowed)
            for allowed in EXTRA_IMPORTERS
        ):
            continue
        problems.extend(
            f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}: {importer} imports {imported}"
            for line, imported in imported_modules(path)
            if _is_within(imported, EXTRAS)
        )
    assert problems == []


def test_the_check_catches_upward_and_sideways_imports(tmp_path: Path) -> None:
    """The rules above are not vacuous: a db module importing the pool is caught, and so
    is the pool importing admin (same layer, another wing)."""
    db_probe = PACKAGE_ROOT / "db" / "statements.py"
    pool_probe = PACKAGE_ROOT / "pool" / "options.py"
    fake_root = tmp_path / "graphile_py"
    for real, text in (
        (db_probe, "from graphile_py.pool import WorkerPool\n"),
        (pool_probe, "if True:\n    from graphile_py.admin import inspector\n"),
    ):
        fake = fake_root / real.relative_to(PACKAGE_ROOT)
        fake.parent.mkdir(parents=True, exist_ok=True)
        fake.write_text(text)
    problems = layer_problems(sorted(fake_root.rglob("*.py")), root=fake_root)
    assert [p.split(":")[0] for p in problems if "higher layer" in p] == [
        "graphile_py/db/statements.py"
    ]
    assert {p.split(":")[0] for p in problems if "across wings" in p} == {
        "graphile_py/pool/options.py"
    }


def test_no_module_is_over_600_lines() -> None:
    """~500 lines is where a module becomes a design question; 600 is the hard stop."""
    sizes = {
        str(path.relative_to(PACKAGE_ROOT.parent)): len(path.read_text().splitlines())
        for path in package_modules()
    }
    assert {name: size for name, size in sizes.items() if size > 600} == {}


@pytest.mark.parametrize("name", graphile_py.__all__)
def test_every_public_name_imports_in_a_fresh_interpreter(name: str) -> None:
    """``from graphile_py import X`` works for each name, lazy ones included."""
    code = f"from graphile_py import {name}; assert {name} is not None"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE_ROOT.parent)


def test_importing_the_package_loads_no_extra_and_no_cron() -> None:
    """`import graphile_py` stays light: extras and cron load only when used."""
    code = (
        "import sys, graphile_py, graphile_py.cli\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('graphile_py.extras',"
        " 'graphile_py.contrib', 'graphile_py.cron', 'fastapi', 'prometheus_client', 'json5',"
        " 'django', 'sqlalchemy', 'opentelemetry', 'pydantic.v1')))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE_ROOT.parent)
