# ruff: noqa: RUF001
"""The main table of ``bash bench/run``: graphile-py, Node graphile-worker and the Python
peers (PgQueuer, procrastinate) side by side, with the database's cost of every drain."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from drain import DrainResult
from report import SYSTEMS, Row, exactly_once_row, markdown_table, median

if TYPE_CHECKING:
    from bench import Bench

DRAINS = [(1, False), (2, False), (1, True), (2, True)]
HISTORY_DRAINS = [(1, False), (1, True)]
LAT_KEYS = ("min", "p50", "p95", "p99", "max")


class Table:
    """The rows, filled as runs finish."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.exact: dict[str, list[str]] = {system: [] for system in SYSTEMS}
        self.checked: dict[str, int] = dict.fromkeys(SYSTEMS, 0)

    def row(self, key: str, metric: str, higher: bool = True) -> Row:
        if key not in self.rows:
            self.rows[key] = Row(metric, "", higher)
        return self.rows[key]

    def drain_rows(self, key: str, metric: str) -> None:
        """A drain's rate, then its server CPU and WAL per job right below it."""
        self.row(key, metric)
        self.row(f"{key}/cpu", "↳ PostgreSQL server CPU per 1,000 jobs (ms)", False)
        self.row(f"{key}/wal", "↳ WAL per job (bytes)", False)

    def note(self, key: str, system: str, text: str) -> None:
        for suffix in ("", "/cpu", "/wal"):
            self.rows[key + suffix].note[system] = text

    def record(self, key: str, system: str, result: DrainResult, what: str) -> None:
        self.rows[key].add(system, result.rate)
        self.rows[f"{key}/cpu"].add(system, result.cpu_ms_per_1000)
        self.rows[f"{key}/wal"].add(system, result.wal_per_job)
        self.checked[system] += 1
        if not result.exactly_once:
            self.exact[system].append(f"{what}: {result.problem}")

    def drain_keys(self, key: str) -> list[Row]:
        return [self.rows[key], self.rows[f"{key}/cpu"], self.rows[f"{key}/wal"]]


def _what(procs: int, batched: bool) -> str:
    return f"{procs}p/{'batched' if batched else 'defaults'}"


def run_main(bench: Bench, args: argparse.Namespace) -> str:
    from peers import PeerBench

    n, repeats = args.n, args.repeat
    one_n = args.one_by_one_n or max(1, n // 4)
    peers = PeerBench(bench) if args.peers else None
    systems = SYSTEMS if peers else ("py", "node")
    t = Table()
    r_bulk = t.row(
        "bulk",
        f"enqueue bulk: one add_jobs call of {n:,} (PgQueuer, procrastinate: their bulk"
        " enqueue of the jobs of the 1-process drain, timed by their client) (jobs/s)",
    )
    r_one = t.row(
        "one",
        f"enqueue one by one: {one_n:,} add_job calls on one connection (Node:"
        " WorkerUtils.addJob) (jobs/s)",
    )
    r_utils = t.row(
        "utils",
        f"enqueue one by one: {one_n:,} WorkerUtils.add_job calls (Node: WorkerUtils.addJob,"
        " the same runs as above) (jobs/s)",
    )
    for procs, batched in DRAINS:
        t.drain_rows(
            f"drain-{procs}-{batched}",
            f"drain {n:,} no-op jobs, {procs} process{'es' if procs > 1 else ''},"
            f" {'batched' if batched else 'defaults'} (jobs/s)",
        )
    # The job history's cost: graphile-py with history on, beside the others' same drain.
    for procs, batched in HISTORY_DRAINS:
        t.drain_rows(
            f"drain-{procs}-{batched}-history",
            f"drain {n:,} no-op jobs, {procs} process, {'batched' if batched else 'defaults'},"
            " graphile-py with history on (the others: the row above) (jobs/s)",
        )
    for pool in args.cli_pool_sizes:
        t.drain_rows(
            f"cli-{pool}",
            f"drain {n:,} no-op jobs through the CLI, 1 process, defaults,"
            f" -j {args.concurrency} --max-pool-size {pool} (jobs/s)",
        )
    for key in LAT_KEYS:
        t.row(f"lat-{key}", f"latency add_job → task start, {key} (ms)", False)
    r_ss = t.row("startstop", "start+stop, CLI --once on an empty queue (ms)", False)
    r_rss = t.row(
        "rss", f"peak RSS of a worker draining {n:,} jobs, 1 process, defaults (MB)", False
    )
    r_rss_b = t.row(
        "rss-b", f"peak RSS of a worker draining {n:,} jobs, 1 process, batched (MB)", False
    )
    ceilings: dict[int, list[float]] = {1: [], 500: []}

    if not bench.py_batching:
        for procs in (1, 2):
            t.note(f"drain-{procs}-True", "py", "n/a (not supported)")
        t.note("drain-1-True-history", "py", "n/a (not supported)")
        r_rss_b.note["py"] = "n/a (not supported)"
    if not bench.py_history:
        for procs, batched in HISTORY_DRAINS:
            t.note(f"drain-{procs}-{batched}-history", "py", "n/a (not supported)")
    if peers:
        for system, text in peers.notes(args).items():
            for key, note in text.items():
                if key in ("rss-b", "bulk"):
                    t.rows[key].note[system] = note
                elif key in t.rows and f"{key}/cpu" in t.rows:
                    t.note(key, system, note)
                elif key == "other":
                    for other in ("one", "utils", "startstop", *(f"lat-{k}" for k in LAT_KEYS)):
                        t.rows[other].note[system] = note
    if args.drain_only:
        for key in ("bulk",):
            for runtime in ("py", "node"):
                t.rows[key].note[runtime] = "not measured (--drain-only)"

    for rep in range(repeats):
        order = systems if rep % 2 == 0 else tuple(reversed(systems))
        runtimes = [s for s in order if s in ("py", "node")]
        bench.log_progress(f"repeat {rep + 1}/{repeats} (order: {', '.join(order)})")
        if not args.drain_only:
            for runtime in runtimes:
                rate = bench.enqueue(runtime, "bulk", n)
                r_bulk.add(runtime, rate)
                bench.log_progress(f"  {runtime}: bulk enqueue {rate:,.0f} jobs/s")
            for runtime in runtimes:
                rate = bench.enqueue(runtime, "one", one_n)
                r_one.add(runtime, rate)
                bench.log_progress(f"  {runtime}: one-by-one enqueue {rate:,.0f} jobs/s")
                if runtime == "py":
                    rate = bench.enqueue(runtime, "utils", one_n)
                r_utils.add(runtime, rate)
        for procs, batched in DRAINS:
            key = f"drain-{procs}-{batched}"
            for system in order:
                if system in t.rows[key].note:
                    continue
                if system in ("py", "node"):
                    result = bench.drain(system, processes=procs, batched=batched, n=n)
                else:
                    assert peers is not None
                    result = peers.drain(system, processes=procs, batched=batched, n=n)
                    if (procs, batched) == (1, False):
                        r_bulk.add(system, result.enqueue_rate)
                t.record(key, system, result, _what(procs, batched))
                if procs == 1:
                    (r_rss_b if batched else r_rss).add(system, result.rss_mb)
                bench.log_drain(system, _what(procs, batched), result)
                if (procs, batched) not in HISTORY_DRAINS:
                    continue
                hkey = f"{key}-history"
                if system != "py":
                    # Node has no job history; PgQueuer (its log table) and procrastinate
                    # (finished rows kept with their status) always keep one: their cell is
                    # the same run as the row above.
                    t.record(hkey, system, result, _what(procs, batched))
                    t.checked[system] -= 1  # the same run, already counted
                elif "py" not in t.rows[hkey].note:
                    result = bench.drain("py", processes=procs, batched=batched, n=n, history=True)
                    t.record(hkey, "py", result, _what(procs, batched) + "/history")
                    bench.log_drain("py", _what(procs, batched) + " history on", result)
        for pool in args.cli_pool_sizes:
            for runtime in runtimes:
                from cli_drain import cli_drain

                result = cli_drain(bench, runtime, pool=pool, n=n)
                t.record(f"cli-{pool}", runtime, result, f"CLI -m {pool}")
                bench.log_drain(runtime, f"CLI -m {pool}", result)
        if args.drain_only:
            continue
        for runtime in runtimes:
            stats = bench.latency_stats(runtime, samples=args.latency_samples)
            for key in LAT_KEYS:
                t.rows[f"lat-{key}"].add(runtime, stats[key])
        for runtime in runtimes:
            times = bench.start_stop(runtime, args.start_stop_samples)
            r_ss.values[runtime].extend(x * 1000 for x in times)
            bench.log_progress(
                f"  {runtime}: start+stop {', '.join(f'{x * 1000:.0f}' for x in times)} ms"
            )
        # The database alone, with the same statements (interleaved, so drift hits it too).
        for batch, clients in ((1, args.concurrency), (500, 2)):
            rate = bench.db_ceiling(batch=batch, clients=clients, n=n)
            ceilings[batch].append(rate)
            bench.log_progress(
                f"  database alone, {batch} per claim, {clients} clients: {rate:,.0f} jobs/s"
            )

    ordered = [r_bulk]
    if not args.drain_only:
        ordered += [r_one, r_utils]
    for procs, batched in DRAINS:
        ordered += t.drain_keys(f"drain-{procs}-{batched}")
    for procs, batched in HISTORY_DRAINS:
        ordered += t.drain_keys(f"drain-{procs}-{batched}-history")
    for pool in args.cli_pool_sizes:
        ordered += t.drain_keys(f"cli-{pool}")
    if not args.drain_only:
        ordered += [t.rows[f"lat-{k}"] for k in LAT_KEYS] + [r_ss]
    ordered += [r_rss, r_rss_b, exactly_once_row(t.checked, t.exact, systems)]
    table = markdown_table(ordered, systems)
    if any(t.exact.values()):
        table += "\n\n**EXACTLY-ONCE CHECK FAILED** — see the row above."
    if peers:
        table += "\n\n" + peers.settings_text(args)
    table += _history_text(t)
    if args.drain_only:
        return table
    return (
        table
        + "\n\n### Throughput as a fraction of the database alone\n\n"
        + _fraction_table(t, ceilings, args)
    )


def _history_text(t: Table) -> str:
    lines = []
    for procs, batched in HISTORY_DRAINS:
        on = t.rows[f"drain-{procs}-{batched}-history"].values["py"]
        off = t.rows[f"drain-{procs}-{batched}"].values["py"]
        if on and off:
            lines.append(
                f"- {procs} process, {'batched' if batched else 'defaults'}: history on / off"
                f" = {median(on) / median(off):.3f} (median of each;"
                f" {median(on):,.0f} / {median(off):,.0f} jobs/s)"
            )
    return "\n\n### The job history's cost\n\n" + "\n".join(lines) if lines else ""


def _fraction_table(t: Table, ceilings: dict[int, list[float]], args: argparse.Namespace) -> str:
    ceiling = {False: ceilings[1], True: ceilings[500]}
    frac_lines = [
        "| drain | database alone (pgbench) | graphile-py | % of database | Node | % of database |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for procs, batched in DRAINS:
        source = t.rows[f"drain-{procs}-{batched}"]
        base = median(ceiling[batched])
        cells = [
            f"{procs} process{'es' if procs > 1 else ''}, {'batched' if batched else 'defaults'}",
            f"{base:,.0f} jobs/s ({'500' if batched else '1'} per claim)",
        ]
        for runtime in ("py", "node"):
            if runtime in source.note or not source.values[runtime]:
                cells += [source.note.get(runtime, "n/a"), "–"]
            else:
                rate = median(source.values[runtime])
                cells += [f"{rate:,.0f} jobs/s", f"{100 * rate / base:.0f}%"]
        frac_lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(frac_lines) + (
        "\n\n*Database alone*: graphile-py's own claim statement (the same SQL for one job"
        " or for up to 500) and its complete statement (delete one / delete many) issued by"
        f" `pgbench -M prepared` in a tight loop, {args.concurrency} clients for one job per"
        " claim and 2 clients for 500 per claim, no task dispatch; median of"
        f" {len(ceiling[False])} run(s) interleaved with the others."
    )
