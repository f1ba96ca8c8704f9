"""Many hosts: 1, 2 and 4 ``graphile-py worker`` processes (each its own pool) on one database.

Runs bench/scale.py (the script that produces bench/results/scale-hosts.md) at small N
against this test's database: every job exactly once, no two jobs of one named queue
overlapping in time, and no more connections than docs/deployment.md's budget.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.support import TestDatabase, unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
SCALE = REPO_ROOT / "bench" / "scale.py"


def _scale_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpy_bench_scale", SCALE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_two_four_processes(db: TestDatabase, tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    n, queued_every, queues = 3000, 10, 20
    proc = subprocess.run(
        [
            sys.executable,
            str(SCALE),
            "--dsn",
            db.dsn,
            "--schema",
            db.schema,
            "--processes",
            "1,2,4",
            "--n",
            str(n),
            "--jobs",
            "4",
            "--max-pool-size",
            "4",
            "--queued-every",
            str(queued_every),
            "--queues",
            str(queues),
            "--timeout",
            "60",
            "--json",
            str(out),
            "--markdown",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    assert [r["processes"] for r in results] == [1, 2, 4]
    for r in results:
        assert r["exactly_once"], r
        assert r["queued_jobs"] == n // queued_every and r["queues"] == queues, r
        assert r["overlaps"] == 0, r
        assert r["exit_codes"] == [0] * r["processes"], r
        # Every process opened its own pool: at least its LISTEN and heartbeat
        # connections and one pool connection each, never more than the budget.
        assert 3 * r["processes"] <= r["peak_connections"] <= r["processes"] * (4 + 2), r
        assert r["rate"] > 0


def test_the_checker_finds_a_duplicate_a_missing_job_and_an_overlap(tmp_path: Path) -> None:
    """The scale script's own checks can fail (so a passing run means something)."""
    scale = _scale_module()
    (tmp_path / "1.txt").write_text("1 - 0 1\n2 7 100 200\n3 7 150 250\n")
    (tmp_path / "2.txt").write_text("1 - 5 6\n")
    found = scale._check(tmp_path, 1, 4)
    assert not found["exactly_once"]
    assert found["ran_twice"] == [1] and found["missing"] == [4]
    assert found["overlaps"] == 1
    (tmp_path / "2.txt").write_text("4 7 250 300\n")
    (tmp_path / "1.txt").write_text("1 - 0 1\n2 7 100 200\n3 7 200 250\n")
    assert scale._check(tmp_path, 1, 4) == {
        "exactly_once": True,
        "ran_twice": [],
        "missing": [],
        "foreign": [],
        "queued_jobs": 3,
        "queues": 1,
        "overlaps": 0,
    }


def test_processes_in_network_namespaces_of_their_own(tmp_path: Path) -> None:
    """--netns: each process reaches a private cluster from its own network namespace."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        unavailable("network namespaces need root and iproute2's ip")
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCALE),
            "--netns",
            "--processes",
            "2",
            "--n",
            "600",
            "--json",
            str(out),
            "--markdown",
            "-",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = json.loads(out.read_text())
    assert result["exactly_once"] and result["overlaps"] == 0, result
    assert result["client_addresses"] == ["10.231.0.2", "10.231.1.2"], result
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert "gpyscale" not in listed.stdout  # cleaned up
