"""Configuration for the command line: the only module that reads env vars and files.

Precedence, highest first: command-line flags, environment variables, ``graphile_py.toml``
(or the file given with ``--config``), the ``[tool.graphile-py]`` table of
``pyproject.toml`` in the working directory, then the defaults below. Library code
never reads any of these; it takes keyword arguments.

Environment variables: ``DATABASE_URL`` and ``GRAPHILE_WORKER_SCHEMA`` (shared with Node
graphile-worker), and ``GRAPHILE_PY_<SETTING>`` for the rest (``GRAPHILE_PY_JOBS=4``).
Times are in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from graphile_py.db.migrations import DEFAULT_SCHEMA
from graphile_py.errors import ConfigurationError
from graphile_py.pool.options import WorkerOptions

__all__ = ["CONFIG_FILE_NAME", "Settings", "load_settings"]

CONFIG_FILE_NAME = "graphile_py.toml"


class Settings(BaseSettings):
    """Every setting the CLI understands, validated."""

    model_config = SettingsConfigDict(
        env_prefix="GRAPHILE_PY_",
        extra="forbid",
        populate_by_name=True,
        pyproject_toml_table_header=("tool", "graphile-py"),
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "GRAPHILE_PY_DATABASE_URL"),
        description="libpq connection string or URL",
    )
    worker_schema: str = Field(
        default=DEFAULT_SCHEMA,
        min_length=1,
        validation_alias=AliasChoices("GRAPHILE_WORKER_SCHEMA", "GRAPHILE_PY_SCHEMA"),
        description="the PostgreSQL schema holding the queue",
    )
    tasks: str | None = Field(default=None, description="'module:attribute' naming the task map")
    jobs: int = Field(default=1, ge=1, description="jobs run at once (worker threads)")
    poll_interval: float = Field(default=2.0, gt=0)
    max_pool_size: int = Field(default=10, ge=1)
    prepared_statements: bool = True
    graceful_shutdown_abort_timeout: float = Field(default=5.0, ge=0)
    shutdown_timeout: float = Field(default=30.0, ge=0)
    min_reset_locked_interval: float = Field(default=480.0, gt=0)
    max_reset_locked_interval: float = Field(default=600.0, gt=0)
    use_node_time: bool = False
    local_queue_size: int | None = Field(default=None, ge=1)
    local_queue_ttl: float = Field(default=300.0, ge=0)
    complete_job_batch_delay: float | None = Field(default=None, ge=0)
    fail_job_batch_delay: float | None = Field(default=None, ge=0)
    task_timeout: float | None = Field(default=None, gt=0)
    task_timeout_grace: float = Field(default=1.0, ge=0)
    forbidden_flags: list[str] | None = None
    #: None: ./crontab if it exists. A file named explicitly must exist.
    crontab: str | None = Field(default=None, min_length=1, description="crontab file path")
    embedded: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``text``: readable lines; ``json``: one JSON object per line.
    log_format: Literal["text", "json"] = "text"
    #: Serve /metrics, /healthz and /readyz on this port (None: off; 0: any free port).
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = Field(default="127.0.0.1", min_length=1)
    #: Seconds between queue samples (queue depth, oldest ready job) for the metrics.
    metrics_interval: float = Field(default=15.0, gt=0)

    def worker_options(self) -> WorkerOptions:
        """The worker options these settings describe."""
        return WorkerOptions(
            schema=self.worker_schema,
            concurrency=self.jobs,
            poll_interval=self.poll_interval,
            max_pool_size=self.max_pool_size,
            prepared_statements=self.prepared_statements,
            graceful_shutdown_abort_timeout=self.graceful_shutdown_abort_timeout,
            shutdown_timeout=self.shutdown_timeout,
            min_reset_locked_interval=self.min_reset_locked_interval,
            max_reset_locked_interval=self.max_reset_locked_interval,
            use_node_time=self.use_node_time,
            local_queue_size=self.local_queue_size,
            local_queue_ttl=self.local_queue_ttl,
            complete_job_batch_delay=self.complete_job_batch_delay,
            fail_job_batch_delay=self.fail_job_batch_delay,
            task_timeout=self.task_timeout,
            task_timeout_grace=self.task_timeout_grace,
            forbidden_flags=list(self.forbidden_flags) if self.forbidden_flags else None,
        )


class _SchemaKey:
    """Lets config files say ``schema`` for the worker schema, as the CLI does.

    (Only files get the short key: as an environment variable, ``SCHEMA`` is far too
    generic to mean the queue's schema.)
    """

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(super().__call__())  # type: ignore[misc]
        if "schema" in data:
            data["GRAPHILE_WORKER_SCHEMA"] = data.pop("schema")
        return data


class _TomlFile(_SchemaKey, TomlConfigSettingsSource):
    pass


class _PyprojectTable(_SchemaKey, PyprojectTomlConfigSettingsSource):
    pass


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: Path | None = None,
    directory: Path | None = None,
) -> Settings:
    """Settings from flags (``overrides``; None values are ignored), env and files.

    ``directory`` is where ``graphile_py.toml`` and ``pyproject.toml`` are looked for
    (default: the working directory). An explicit ``config_file`` must exist.
    """
    base = directory or Path.cwd()
    if config_file is not None and not config_file.is_file():
        raise ConfigurationError(f"config file {str(config_file)!r} does not exist")
    toml_file = config_file or base / CONFIG_FILE_NAME
    pyproject = base / "pyproject.toml"

    class _FromFiles(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                env_settings,
                _TomlFile(settings_cls, toml_file=toml_file),
                _PyprojectTable(settings_cls, toml_file=pyproject),
            )

    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    try:
        loaded = _FromFiles(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from exc
    except ValueError as exc:  # a malformed TOML file
        raise ConfigurationError(f"could not read the configuration: {exc}") from exc
    settings = Settings.model_construct(**loaded.model_dump())
    if settings.max_reset_locked_interval < settings.min_reset_locked_interval:
        raise ConfigurationError(
            "invalid configuration: max_reset_locked_interval must not be below"
            " min_reset_locked_interval"
        )
    return settings
