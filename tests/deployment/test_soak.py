"""A table that stays small: the short version of bench/soak.py (the 15-minute runs are in
bench/results/soak-*.md and docs/soak.png).

One minute at 100 jobs/s on a private cluster with autovacuum on (naptime 5 s instead of
60 s, so that a minute sees several autovacuum rounds): every job is done, throughput
keeps up with the enqueue rate, and dead tuples in the jobs table stay a small fraction
of what the run produced (each job leaves at least two dead row versions: the locking
update's old version and the deleted row), because nothing graphile-py runs holds the
xmin horizon back.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from tests.support import unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
SOAK = REPO_ROOT / "bench" / "soak.py"


def test_dead_tuples_stay_bounded_with_autovacuum(tmp_path: Path) -> None:
    if not any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and not _on_path("initdb"):
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) are needed for a private cluster")
    rate = 100
    proc = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--minutes",
            "1",
            "--rate",
            str(rate),
            "--processes",
            "1",
            "--jobs",
            "4",
            "--naptime",
            "5",
            "--sample-every",
            "5",
            "--label",
            "ci",
            "--out-dir",
            str(tmp_path),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "soak-ci.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 10
    added = int(rows[-1]["added"])
    assert added >= rate * 55
    produced = 2 * added  # dead row versions the run made, at least
    dead = [int(r["dead_tuples"]) for r in rows]
    assert max(dead) < produced * 0.25, dead
    assert dead[-1] < produced * 0.1, dead
    assert int(rows[-1]["autovacuums"]) >= 3, rows[-1]
    throughput = sorted(float(r["throughput"]) for r in rows)
    assert throughput[len(throughput) // 2] >= rate * 0.9, throughput
    summary = (tmp_path / "soak-ci.md").read_text()
    assert "every job done" in summary, summary


def _on_path(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None
