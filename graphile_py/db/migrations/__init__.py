"""The numbered schema migrations shipped with graphile-py, and how to render them.

Each ``NNNNNN.sql`` file in this package has exactly the effect of the graphile-worker
0.18.0 migration of the same number, so that Node and Python workers can share one
schema. A file whose text starts with ``--! breaking`` is a breaking migration. The
token ``:GRAPHILE_WORKER_SCHEMA`` stands for the quoted worker schema identifier, and
``:GRAPHILE_PY_SCHEMA`` for the side schema's (used by
:mod:`graphile_py.db.side_migrations`, which loads its files with :func:`load_numbered`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from graphile_py.errors import ConfigurationError

__all__ = [
    "DEFAULT_SCHEMA",
    "MAX_IDENTIFIER_BYTES",
    "Migration",
    "check_identifier",
    "load_migrations",
    "load_numbered",
    "quote_identifier",
    "render_schema",
]

#: The worker schema's name unless told otherwise (graphile-worker's default too).
DEFAULT_SCHEMA = "graphile_worker"

#: PostgreSQL truncates longer identifiers (NAMEDATALEN - 1), which would silently make
#: two different schema names the same schema.
MAX_IDENTIFIER_BYTES = 63

_PLACEHOLDER = re.compile(r":GRAPHILE_WORKER_SCHEMA\b")
_SIDE_PLACEHOLDER = re.compile(r":GRAPHILE_PY_SCHEMA\b")
_FILE_NAME = re.compile(r"^(\d{6})\.sql$")
_BREAKING_PREFIX = "--! breaking"


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration script, as shipped (placeholder not yet rendered)."""

    number: int
    name: str
    text: str

    @property
    def breaking(self) -> bool:
        """True if older workers must not run against a schema with this migration."""
        return self.text.startswith(_BREAKING_PREFIX)

    def render(self, schema: str, side_schema: str | None = None) -> str:
        """The script with every schema placeholder replaced by the quoted names.

        ``side_schema`` replaces ``:GRAPHILE_PY_SCHEMA``; a script that uses it cannot be
        rendered without one.
        """
        text = render_schema(self.text, schema)
        if side_schema is not None:
            quoted = quote_identifier(side_schema)
            return _SIDE_PLACEHOLDER.sub(lambda _match: quoted, text)
        if _SIDE_PLACEHOLDER.search(text):
            raise ConfigurationError(f"migration {self.name} needs the side schema's name")
        return text


def check_identifier(name: str) -> None:
    """Refuse a schema name PostgreSQL would reject or silently truncate."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"the schema name must be a non-empty string, not {name!r}")
    if "\x00" in name:
        raise ConfigurationError("the schema name must not contain a NUL character")
    size = len(name.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"the schema name {name[:20]!r}... is {size} bytes long; PostgreSQL allows at most"
            f" {MAX_IDENTIFIER_BYTES} and would silently truncate it"
        )


def quote_identifier(name: str) -> str:
    """Quote ``name`` as a PostgreSQL identifier (double quotes, embedded ones doubled)."""
    check_identifier(name)
    return '"' + name.replace('"', '""') + '"'


def render_schema(text: str, schema: str) -> str:
    """Replace ``:GRAPHILE_WORKER_SCHEMA`` in ``text`` with the quoted ``schema``.

    A function replacement keeps backslashes in the schema name literal.
    """
    quoted = quote_identifier(schema)
    return _PLACEHOLDER.sub(lambda _match: quoted, text)


def load_migrations() -> tuple[Migration, ...]:
    """Every shipped migration of the worker schema, in ascending order of number."""
    return load_numbered(__name__)


@cache
def load_numbered(package: str) -> tuple[Migration, ...]:
    """The ``NNNNNN.sql`` files of ``package``, in ascending order, numbered 1..N."""
    found: list[Migration] = []
    for entry in resources.files(package).iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda migration: migration.number)
    numbers = [migration.number for migration in found]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RuntimeError(f"the migrations in {package} are not numbered 1..N: {numbers}")
    return tuple(found)
