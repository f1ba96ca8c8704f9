"""The dashboard serves the JSON schema of typed tasks' payloads (given the registry).

A real dashboard server on a real database; the schemas come from the registry, as
``graphile-py dashboard --tasks module:registry`` passes them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from graphile_py import JobHelpers, TaskRegistry, WorkerUtils
from graphile_py.extras.dashboard import create_app
from graphile_py.extras.dashboard.server import BackgroundServer
from tests.support import TestDatabase


class SendEmail(BaseModel):
    to: str
    subject: str = "hello"


@dataclasses.dataclass
class Resize:
    width: int


registry = TaskRegistry()


@registry.task
def send_email(payload: SendEmail, helpers: JobHelpers) -> None: ...


@registry.task("images/resize")
def resize(payload: Resize, helpers: JobHelpers) -> None: ...


@registry.task
def untyped(payload: object, helpers: JobHelpers) -> None: ...


@pytest.fixture
def utils(db: TestDatabase) -> Iterator[WorkerUtils]:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        yield utils


def serve(utils: WorkerUtils, **options: object) -> BackgroundServer:
    return BackgroundServer(create_app(utils, sample_interval=60, **options))  # type: ignore[arg-type]


def test_the_api_serves_each_typed_payload_schema(utils: WorkerUtils) -> None:
    with (
        serve(utils, payload_schemas=registry.payload_schemas()) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        everything = client.get("/api/v1/payload-schemas")
        assert everything.status_code == 200
        assert sorted(everything.json()) == ["images/resize", "send_email"]
        one = client.get("/api/v1/payload-schemas/images/resize")
        assert one.status_code == 200
        assert one.json() == {
            "properties": {"width": {"title": "Width", "type": "integer"}},
            "required": ["width"],
            "title": "Resize",
            "type": "object",
        }
        assert client.get("/api/v1/payload-schemas/send_email").json()["required"] == ["to"]
        missing = client.get("/api/v1/payload-schemas/untyped")
        assert missing.status_code == 404
        assert "no payload schema is known for task 'untyped'" in missing.json()["message"]
        paths = client.get("/api/v1/openapi.json").json()["paths"]
        assert "/api/v1/payload-schemas" in paths
        assert "/api/v1/payload-schemas/{identifier}" in paths


def test_without_the_registry_the_answer_says_how_to_get_schemas(utils: WorkerUtils) -> None:
    with (
        serve(utils) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        assert client.get("/api/v1/payload-schemas").json() == {}
        missing = client.get("/api/v1/payload-schemas/send_email")
        assert missing.status_code == 404
        assert "--tasks module:registry" in missing.json()["message"]


def test_the_command_refuses_a_tasks_module_it_cannot_load(
    db: TestDatabase, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphile_py",
            "dashboard",
            "-c",
            db.dsn,
            "-s",
            db.schema,
            "--port",
            "0",
            "--tasks",
            "no_such_module:registry",
        ],
        cwd=tmp_path,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "could not find the task module 'no_such_module'" in result.stderr


TASKS_MODULE = """
import dataclasses
from graphile_py import TaskRegistry

registry = TaskRegistry()


@dataclasses.dataclass
class Ping:
    count: int


@registry.task
def ping(payload: Ping, helpers) -> None: ...
"""


def test_the_command_serves_the_schemas_of_the_registry_it_is_given(
    db: TestDatabase, tmp_path: Path
) -> None:
    (tmp_path / "mytasks.py").write_text(TASKS_MODULE)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "graphile_py", "dashboard", "-c", db.dsn, "-s", db.schema),
            *("--port", str(port), "--tasks", "mytasks:registry"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v1/payload-schemas"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(url, timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the dashboard did not start in 30s"
                time.sleep(0.1)
        assert response.status_code == 200
        assert response.json()["ping"]["required"] == ["count"]
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
