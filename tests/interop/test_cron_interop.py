"""Cron shared between graphile-py and the real Node graphile-worker 0.18.0.

* The crontab parser agrees with Node's ``parseCrontab`` on a corpus of good and bad
  crontabs: items, options, payloads (as the exact JSON text Node would store), parsed
  ranges, matching, and the exact error messages.
* A Node cron runner and Python schedulers started together on one database, all
  backfilling the same minutes, write each minute's job exactly once.
* For the same item and minute, the job a Node runner writes equals ours: payload bytes,
  run_at, queue, priority, max_attempts, key, flags.

The Node side is ``node/cron_driver.mjs``. Everything runs on backfill, so nothing waits
for a real minute to pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from graphile_py.cron.crontab import CronItem, parse_crontab
from graphile_py.cron.js import js_json
from graphile_py.cron.schedule import CronSchedule
from graphile_py.cron.scheduler import CronScheduler
from graphile_py.errors import CrontabError
from tests.support import TestDatabase

pytestmark = pytest.mark.node

DRIVER = Path(__file__).parent / "node" / "cron_driver.mjs"
NODE_TIMEOUT = 30.0


# -- the Node driver ---------------------------------------------------------------------


def node_url(dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    user = quote(str(params.get("user") or "postgres"), safe="")
    password = params.get("password")
    auth = user + (":" + quote(str(password), safe="") if password else "")
    host = str(params.get("host") or "127.0.0.1")
    port = str(params.get("port") or "5432")
    return f"postgresql://{auth}@{host}:{port}/{quote(str(params['dbname']), safe='')}"


def write_config(tmp_path: Path, name: str, config: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config), "utf-8")
    return path


class NodeCron:
    """A running ``cron_driver.mjs`` in "run" mode."""

    def __init__(self, package: Path, db: TestDatabase, crontab: str, tmp_path: Path) -> None:
        config = {
            "package": str(package),
            "mode": "run",
            "connectionString": node_url(db.dsn),
            "schema": db.schema,
            "crontab": crontab,
        }
        path = write_config(tmp_path, f"node-cron-{db.name}", config)
        self.stdout = tmp_path / f"node-cron-{db.name}.out"
        self.stderr = tmp_path / f"node-cron-{db.name}.err"
        env = {**os.environ, "NO_LOG_SUCCESS": "1"}
        env.pop("GRAPHILE_LOGGER_DEBUG", None)
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                ["node", str(DRIVER), str(path)],
                cwd=tmp_path,  # no crontab file here
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                env=env,
            )

    def diagnostics(self) -> str:
        return (
            f"exit status {self.proc.poll()}\n--- stderr ---\n"
            f"{self.stderr.read_text('utf-8', 'replace')[-4000:]}\n--- stdout ---\n"
            f"{self.stdout.read_text('utf-8', 'replace')[-2000:]}"
        )

    def wait_for(self, line: str, timeout: float = NODE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.stdout.read_text("utf-8", "replace").splitlines():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {line!r} from the Node driver\n{self.diagnostics()}")
            time.sleep(0.01)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            status = self.proc.wait(timeout=NODE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"the Node driver did not stop\n{self.diagnostics()}") from None
        assert status == 0, f"the Node driver failed\n{self.diagnostics()}"
        assert "STOPPED" in self.stdout.read_text("utf-8", "replace")


def node_parse(
    package: Path, crontabs: list[str], timestamps: list[datetime], tmp_path: Path
) -> list[dict[str, Any]]:
    config = {
        "package": str(package),
        "mode": "parse",
        "crontabs": crontabs,
        "timestamps": [int(ts.timestamp() * 1000) for ts in timestamps],
    }
    path = write_config(tmp_path, "parse", config)
    result = subprocess.run(
        ["node", str(DRIVER), str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    parsed: list[dict[str, Any]] = json.loads(result.stdout)
    return parsed


# -- the parser agrees with parseCrontab -------------------------------------------------

CORPUS = [
    # good
    "* * * * * simple",
    "0 4 * * 7 sunday ?id=sunday_7\n0 4 * * 0 sunday",
    "*/10,7,56-59 1 1 1 1 one ?id=stuff&fill=4w3d2h1m&max=3&queue=my_queue&priority=3"
    ' {myExtraPayload:{stuff:"here with # hash char"}}',
    "\t  *   *  *  *  *   lots_of_spaces   \r\n\r\n# comment\n   # indented comment\n",
    "* * * * * with_key ?jobKey=my_key\n* * * * * with_mode ?jobKey=k&jobKeyMode=preserve_run_at",
    "* * * * * nested/folder/task:x-y ?queue=a:b-c_d&priority=-12&max=0",
    "* * * * * t ?jobKey=&fill=0s",
    "* * * * * t ?jobKey=a%20b+c%2Bd%ZZ&id=x",
    "0 0 1-31 1-12 0-7 all_days\n30 12 13 * 5 friday_13th_or_friday ?id=f13",
    "0-5 15 3-4 7 0-2 or_rule",
    "*/7 */5 */10 */4 */3 steps",
    "05 07 09 011 06 leading_zeros",
    "* * * * * t {a: Infinity, b: -0, c: 1.0, d: 1e21, e: 1e-7, f: 0x1F, g: .5, h: +2, 'i': NaN}",
    '* * * * * t {"2": 2, b: 1, "1": 1, "01": 0, nested: {"9": 9, z: [1, {"3": 3, y: 2}]}}',
    "* * * * * t {s: 'single \\' quote', d: \"double \\\" quote\", u: '\\u00e9\\x41', "
    "l: 'line\\\ncontinued', e: '\\ud83d\\ude00', n: null, t: true, arr: [1, 2,],}",
    "* * * * * t {/* comment */ a: 1 // trailing comment }",
    "* * * * * t { $dollar: 1, _under: 2, café: 3 }",
    # bad
    "* * * * too_few_parameters",
    "* * * * * two tasks",
    "1,60 * * * * out_of_range",
    "* * 0 * * too_small",
    "* * * * 8 bad_dow",
    "*/0 * * * * division_by_zero",
    "*/00 * * * * division_by_zero_again",
    "5-5 * * * * empty_range",
    "9-3 * * * * backwards_range",
    "1-5/2 * * * * step_range",
    "1,,2 * * * * empty_part",
    "* * * JAN * names",
    "? * * * * question",
    "* * * * * 1task",
    "* * * * * task ?",
    "* * * * * task ?opts with space",
    "* * * * * invalid_options ?unknown=3",
    "* * * * * t ?max=1&max=2",
    "* * * * * t ?fill=1y",
    "* * * * * t ?fill=",
    "* * * * * t ?id=1abc",
    "* * * * * t ?queue=a%20b",
    "* * * * * t ?priority=+1",
    "* * * * * t ?jobKeyMode=unsafe_dedupe",
    "* * * * * t ?=x",
    "* * * * * t ?fill",
    "* * * * * json_syntax_error {invalidJson=true}",
    "* * * * * t {a: 'unterminated}",
    "* * * * * t {a: 01}",
    "* * * * * t {a: tru}",
    "* * * * * t {1a: 2}",
    "* * * * * t {a: [1,,2]}",
    '* * * * * t {a: "\\u00zz"}',
    "* * * * * t {a: 1 /* never closed }",
    "* * * * * t {a: 1} trailing",
    "* * * * * t {a: '#'}  # comment",
    "* * * * * a\n0 * * * * b\n0 0 * * * a\n1 * * * * b ?id=a",
    "* * * * * x ?id=y\n* * * * * y",
]

TIMESTAMPS = [
    datetime(2021, 1, 1, tzinfo=UTC),
    datetime(2024, 7, 3, 15, 0, tzinfo=UTC),  # a Wednesday
    datetime(2024, 7, 7, 15, 5, tzinfo=UTC),  # a Sunday
    datetime(2024, 9, 13, 12, 30, tzinfo=UTC),  # Friday 13th
    datetime(2024, 12, 31, 23, 59, tzinfo=UTC),
    datetime(2025, 11, 9, 7, 5, tzinfo=UTC),
    datetime(2028, 2, 29, 4, 0, tzinfo=UTC),
]


def node_options(item: CronItem) -> dict[str, Any]:
    named = {
        "backfillPeriod": round(item.backfill_period * 1000),
        "maxAttempts": item.max_attempts,
        "queueName": item.queue_name,
        "priority": item.priority,
        "jobKey": item.job_key,
        "jobKeyMode": item.job_key_mode,
    }
    return {key: value for key, value in named.items() if value is not None}


def python_parse(text: str) -> dict[str, Any]:
    try:
        items = parse_crontab(text)
    except CrontabError as exc:
        # graphile-worker's wording; our hint, when there is one, follows it in str(exc).
        assert str(exc).startswith(exc.node_message)
        return {"error": exc.node_message}
    result = []
    for item in items:
        assert isinstance(item.match, CronSchedule)
        result.append(
            {
                "task": item.task,
                "identifier": item.identifier,
                "options": node_options(item),
                # Byte for byte what JSON.stringify writes, hence what the json column stores.
                "payloadText": js_json(item.payload),
                "ranges": {
                    "minutes": list(item.match.minutes),
                    "hours": list(item.match.hours),
                    "dates": list(item.match.dates),
                    "months": list(item.match.months),
                    "dows": list(item.match.dows),
                },
                "matches": [item.matches(ts) for ts in TIMESTAMPS],
            }
        )
    return {"items": result}


def test_parser_agrees_with_node(node_worker: Path, tmp_path: Path) -> None:
    node_results = node_parse(node_worker, CORPUS, TIMESTAMPS, tmp_path)
    assert len(node_results) == len(CORPUS)
    for text, node in zip(CORPUS, node_results, strict=True):
        assert python_parse(text) == node, f"crontab {text!r}"
    errors = [node for node in node_results if "error" in node]
    assert len(errors) >= 30  # the corpus exercises the error paths too


# -- runners on one database -------------------------------------------------------------


@contextmanager
def python_pool(db: TestDatabase) -> Iterator[ConnectionPool[psycopg.Connection[Any]]]:
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        db.dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
    )
    pool.open(wait=True, timeout=30)
    try:
        yield pool
    finally:
        pool.close()


def seed_known(db: TestDatabase, identifiers: list[str]) -> None:
    with db.connect() as conn:
        for identifier in identifiers:
            conn.execute(
                sql.SQL(
                    "insert into {}._private_known_crontabs (identifier, known_since)"
                    " values (%s, now() - interval '2 hours')"
                ).format(sql.Identifier(db.schema)),
                (identifier,),
            )


def cron_jobs(db: TestDatabase) -> list[dict[str, Any]]:
    with db.connect(row_factory=dict_row) as conn:
        return conn.execute(
            sql.SQL(
                "select jobs.payload::text as payload_text, jobs.run_at, jobs.priority,"
                " jobs.max_attempts, jobs.attempts, jobs.key, jobs.flags, jobs.revision,"
                " tasks.identifier as task, queues.queue_name"
                " from {s}._private_jobs as jobs"
                " join {s}._private_tasks as tasks on tasks.id = jobs.task_id"
                " left join {s}._private_job_queues as queues on queues.id = jobs.job_queue_id"
                " order by jobs.run_at, tasks.identifier"
            ).format(s=sql.Identifier(db.schema))
        ).fetchall()


def start_python(
    db: TestDatabase, pool: ConnectionPool[psycopg.Connection[Any]], crontab: str
) -> CronScheduler:
    scheduler = CronScheduler(parse_crontab(crontab), pool=pool, schema=db.schema)
    scheduler.start()
    return scheduler


def ts_of(job: dict[str, Any]) -> str:
    return str(json.loads(job["payload_text"])["_cron"]["ts"])


def test_node_and_python_backfill_the_same_minutes_once(
    node_worker: Path, db: TestDatabase, tmp_path: Path
) -> None:
    crontab = "* * * * * cron_task ?fill=30m\n*/3 * * * * other_task ?fill=30m&id=other"
    seed_known(db, ["cron_task", "other"])
    node = NodeCron(node_worker, db, crontab, tmp_path)
    schedulers: list[CronScheduler] = []
    try:
        node.wait_for("LOADED")
        with python_pool(db) as pool:
            barrier = threading.Barrier(3)

            def start() -> None:
                barrier.wait()
                schedulers.append(start_python(db, pool, crontab))

            threads = [threading.Thread(target=start) for _ in range(2)]
            for thread in threads:
                thread.start()
            node.send("go")
            barrier.wait()
            for thread in threads:
                thread.join()
            node.wait_for("STARTED")
            for scheduler in schedulers:
                assert scheduler.wait_until_running(10)
                assert scheduler.stop(10)
    finally:
        node.stop()

    jobs = cron_jobs(db)
    per_minute = Counter((job["task"], ts_of(job)) for job in jobs)
    duplicated = {key: count for key, count in per_minute.items() if count > 1}
    assert not duplicated, f"minutes scheduled more than once: {duplicated}"
    minutes = sorted(ts for task, ts in per_minute if task == "cron_task")
    assert 30 <= len(minutes) <= 32  # 30 backfilled, plus any minute that began meanwhile
    first = datetime.fromisoformat(minutes[0].replace("Z", "+00:00"))
    assert minutes == [
        (first + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:00.000Z")
        for i in range(len(minutes))
    ]
    others = [ts for task, ts in per_minute if task == "other_task"]
    assert all(int(ts[14:16]) % 3 == 0 for ts in others)
    assert 10 <= len(others) <= 11


def test_node_and_python_write_identical_cron_jobs(
    node_worker: Path, make_db: Any, template_db: str, tmp_path: Path
) -> None:
    crontab = (
        "* * * * * cron_task ?fill=5m&max=7&queue=cron-q&priority=-3"
        " {a: 1, b: 'two', \"1\": [1.0, 2.5e-7, 1e21], nested: {x: null, '0': true}}\n"
        "*/2 * * * * keyed_task ?id=keyed&fill=5m&jobKey=cron-key&jobKeyMode=preserve_run_at\n"
        "* * * * * plain_task ?fill=5m"
    )
    node_db, python_db = make_db(template=template_db), make_db(template=template_db)
    for target in (node_db, python_db):
        seed_known(target, ["cron_task", "keyed", "plain_task"])
    node = NodeCron(node_worker, node_db, crontab, tmp_path)
    try:
        node.wait_for("LOADED")
        with python_pool(python_db) as pool:
            node.send("go")
            scheduler = start_python(python_db, pool, crontab)
            node.wait_for("STARTED")
            assert scheduler.stop(10)
    finally:
        node.stop()

    def by_minute(target: TestDatabase) -> dict[tuple[str, str], dict[str, Any]]:
        return {(job["task"], ts_of(job)): job for job in cron_jobs(target)}

    theirs, ours = by_minute(node_db), by_minute(python_db)
    common = sorted(set(theirs) & set(ours))
    assert len([key for key in common if key[0] == "cron_task"]) >= 4, (theirs, ours)
    for key in common:
        assert ours[key] == theirs[key], key

    sample = ours[next(key for key in common if key[0] == "cron_task")]
    assert sample["payload_text"].startswith(
        '{"1":[1,2.5e-7,1e+21],"a":1,"b":"two","nested":{"0":true,"x":null},"_cron":{"ts":"'
    )
    assert (sample["queue_name"], sample["priority"], sample["max_attempts"]) == ("cron-q", -3, 7)
    # The keyed item keeps one job per database, updated in place by each minute.
    assert [job["key"] for job in cron_jobs(python_db) if job["task"] == "keyed_task"] == [
        "cron-key"
    ]
