"""Cost of the locked_by fence on completions: old vs new delete, server-side and per round trip."""

import statistics
import time

import psycopg

from graphile_py.db.migrate import migrate

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
N = 20000
with psycopg.connect(ADMIN, autocommit=True) as c:
    c.execute("drop database if exists gpy_fence_bench")
    c.execute("create database gpy_fence_bench")
dsn = "postgresql://postgres@127.0.0.1:5432/gpy_fence_bench"
OLD = "delete from graphile_worker._private_jobs where id = %s::bigint"
NEW = (
    "delete from graphile_worker._private_jobs as jobs where jobs.id = %(id)s::bigint"
    " and (jobs.locked_by = %(pool)s::text or jobs.locked_by is null)"
)
FENCED = (
    "delete from graphile_worker._private_jobs as jobs where jobs.id = i"
    " and (jobs.locked_by = 'pool-x' or jobs.locked_by is null)"
)
with psycopg.connect(dsn, autocommit=True) as conn:
    migrate(conn, schema="graphile_worker")

    def fill():
        conn.execute(
            "select graphile_worker.add_jobs(array(select"
            " ('t','{}',null,null,null,null,null,null)::graphile_worker.job_spec"
            " from generate_series(1,%s)))",
            (N,),
        )
        conn.execute("update graphile_worker._private_jobs set locked_by='pool-x', locked_at=now()")
        conn.execute("vacuum analyze graphile_worker._private_jobs")
        return [
            r[0] for r in conn.execute("select id from graphile_worker._private_jobs order by id")
        ]

    results = {"old": [], "new": []}
    for rnd in range(3):
        for name in ["old", "new"] if rnd % 2 == 0 else ["new", "old"]:
            ids = fill()
            t = time.perf_counter()
            for i in ids:
                if name == "old":
                    conn.execute(OLD, (i,), prepare=True)
                else:
                    conn.execute(NEW, {"id": i, "pool": "pool-x"}, prepare=True)
            results[name].append((time.perf_counter() - t) / len(ids) * 1e6)
    for name, v in results.items():
        print(
            f"{name}: per completion round trip {statistics.median(v):.1f} us"
            f" (runs: {', '.join(f'{x:.1f}' for x in v)})"
        )
    # Server-side only: the statement's execution time without the round trip.
    server = {"old": [], "new": []}
    for name, body in 4 * (
        ("old", "delete from graphile_worker._private_jobs where id = i"),
        ("new", FENCED),
        ("new", FENCED),
        ("old", "delete from graphile_worker._private_jobs where id = i"),
    ):
        fill()
        lo = conn.execute("select min(id) from graphile_worker._private_jobs").fetchone()[0]
        t = time.perf_counter()
        conn.execute(
            f"do $$ declare i bigint; begin for i in {lo}..{lo + N - 1} loop {body};"
            " end loop; end $$"
        )
        server[name].append((time.perf_counter() - t) / N * 1e6)
    for name, v in server.items():
        print(
            f"{name}: server-side per delete {statistics.median(v):.2f} us"
            f" (runs: {', '.join(f'{x:.2f}' for x in v)})"
        )
with psycopg.connect(ADMIN, autocommit=True) as c:
    c.execute("drop database gpy_fence_bench")
