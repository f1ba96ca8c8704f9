"""Settings precedence: flags > env > graphile_py.toml > [tool.graphile-py] > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphile_py import ConfigurationError
from graphile_py.settings import SETTINGS, load_settings

ENV_NAMES = [
    "SCHEMA",
    "WORKER_SCHEMA",
    "GRAPHILE_PY_WORKER_SCHEMA",
    *(name for known in SETTINGS.values() for name in known.env_names),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(directory=tmp_path)
    assert settings.database_url is None
    assert settings.worker_schema == "graphile_worker"
    assert (settings.jobs, settings.poll_interval, settings.max_pool_size) == (1, 2.0, 10)
    options = settings.worker_options()
    assert options.concurrency == 1 and options.schema == "graphile_worker"


def test_each_layer_overrides_the_one_below(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path / "pyproject.toml",
        "[tool.graphile-py]\njobs = 2\npoll_interval = 5\nmax_pool_size = 7\n"
        'schema = "from_pyproject"\ntasks = "a:b"\n',
    )
    settings = load_settings(directory=tmp_path)
    assert (settings.jobs, settings.poll_interval, settings.max_pool_size) == (2, 5.0, 7)
    assert settings.worker_schema == "from_pyproject"

    write(tmp_path / "graphile_py.toml", "jobs = 3\npoll_interval = 4\n")
    settings = load_settings(directory=tmp_path)
    assert (settings.jobs, settings.poll_interval, settings.max_pool_size) == (3, 4.0, 7)

    monkeypatch.setenv("GRAPHILE_PY_JOBS", "4")
    monkeypatch.setenv("GRAPHILE_WORKER_SCHEMA", "from_env")
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    settings = load_settings(directory=tmp_path)
    assert (settings.jobs, settings.worker_schema, settings.database_url) == (
        4,
        "from_env",
        "postgresql://env/db",
    )
    assert settings.poll_interval == 4.0

    settings = load_settings(
        {"jobs": 5, "database_url": "postgresql://flag/db", "poll_interval": None},
        directory=tmp_path,
    )
    assert (settings.jobs, settings.database_url, settings.poll_interval) == (
        5,
        "postgresql://flag/db",
        4.0,
    )
    assert settings.tasks == "a:b"


def test_explicit_config_file(tmp_path: Path) -> None:
    config = write(tmp_path / "custom.toml", 'database_url = "postgresql://file/db"\n')
    assert (
        load_settings(config_file=config, directory=tmp_path).database_url == "postgresql://file/db"
    )
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(config_file=tmp_path / "missing.toml", directory=tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobs = 0\n", "jobs"),
        ("poll_interval = -1\n", "poll_interval"),
        ("no_such_setting = 1\n", "no_such_setting"),
        ("jobs = [\n", "could not read"),
        (
            "min_reset_locked_interval = 10\nmax_reset_locked_interval = 5\n",
            "max_reset_locked_interval",
        ),
    ],
)
def test_invalid_configuration_names_the_setting(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path / "graphile_py.toml", text)
    with pytest.raises(ConfigurationError, match=message):
        load_settings(directory=tmp_path)


def test_invalid_env_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHILE_PY_JOBS", "many")
    with pytest.raises(ConfigurationError, match="jobs"):
        load_settings(directory=tmp_path)


def test_generic_environment_names_are_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEMA", "generic")
    monkeypatch.setenv("WORKER_SCHEMA", "generic")
    monkeypatch.setenv("database_url_unrelated", "x")
    assert load_settings(directory=tmp_path).worker_schema == "graphile_worker"
    monkeypatch.setenv("GRAPHILE_PY_SCHEMA", "ours")
    assert load_settings(directory=tmp_path).worker_schema == "ours"
    monkeypatch.setenv("GRAPHILE_WORKER_SCHEMA", "shared_with_node")
    assert load_settings(directory=tmp_path).worker_schema == "shared_with_node"


def test_files_accept_schema_and_database_url_keys(tmp_path: Path) -> None:
    write(tmp_path / "graphile_py.toml", 'schema = "s1"\ndatabase_url = "postgresql://f/db"\n')
    settings = load_settings(directory=tmp_path)
    assert (settings.worker_schema, settings.database_url) == ("s1", "postgresql://f/db")


def test_metrics_and_log_format_settings_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(directory=tmp_path)
    assert (settings.metrics_port, settings.metrics_host, settings.metrics_interval) == (
        None,
        "127.0.0.1",
        15.0,
    )
    assert settings.log_format == "text"

    write(
        tmp_path / "pyproject.toml",
        '[tool.graphile-py]\nmetrics_port = 9000\nmetrics_host = "::1"\nlog_format = "json"\n',
    )
    settings = load_settings(directory=tmp_path)
    assert (settings.metrics_port, settings.metrics_host, settings.log_format) == (
        9000,
        "::1",
        "json",
    )

    write(tmp_path / "graphile_py.toml", "metrics_port = 9001\nmetrics_interval = 5\n")
    settings = load_settings(directory=tmp_path)
    assert (settings.metrics_port, settings.metrics_host, settings.metrics_interval) == (
        9001,
        "::1",
        5.0,
    )

    monkeypatch.setenv("GRAPHILE_PY_METRICS_PORT", "9002")
    monkeypatch.setenv("GRAPHILE_PY_METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("GRAPHILE_PY_LOG_FORMAT", "text")
    settings = load_settings(directory=tmp_path)
    assert (settings.metrics_port, settings.metrics_host, settings.log_format) == (
        9002,
        "0.0.0.0",
        "text",
    )

    settings = load_settings(
        {"metrics_port": 9003, "metrics_host": "127.0.0.2", "log_format": "json"},
        directory=tmp_path,
    )
    assert (settings.metrics_port, settings.metrics_host, settings.log_format) == (
        9003,
        "127.0.0.2",
        "json",
    )
    assert settings.metrics_interval == 5.0


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("metrics_port", "70000"),
        ("metrics_port", "-1"),
        ("metrics_interval", "0"),
        ("log_format", "xml"),
    ],
)
def test_invalid_metrics_and_log_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str
) -> None:
    monkeypatch.setenv("GRAPHILE_PY_" + name.upper(), text)
    with pytest.raises(ConfigurationError, match=name):
        load_settings(directory=tmp_path)
