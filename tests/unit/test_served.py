"""The verdict on whether a worker serves a task, from the registry or from the jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from graphile_py.admin.served import (
    UNATTEMPTED_AFTER,
    Registry,
    Service,
    TaskEvidence,
    judge,
)

LONG_AGO = UNATTEMPTED_AFTER + timedelta(seconds=1)


def test_the_registry_decides_when_pools_use_it() -> None:
    live = {"email": ["pool-a", "pool-b"]}
    served = judge("email", registry=Registry.IN_USE, live=live)
    assert (served.service, served.pools) == (Service.SERVED, ("pool-a", "pool-b"))
    assert served.note == "served by 2 live graphile-py pools" and not served.unserved
    # A job held by a worker outside the registry is evidence enough.
    outside = judge("sms", registry=Registry.IN_USE, live=live, held_outside=True)
    assert outside.service is Service.SERVED and "Node" in outside.note
    # The jobs' own evidence does not count against the registry: a Node worker that ran
    # a job of it once may be gone.
    evidence = TaskEvidence(running=False, attempted=True, oldest_ready_age=None)
    unserved = judge("sms", registry=Registry.IN_USE, live=live, evidence=evidence)
    assert unserved.service is Service.UNSERVED and unserved.unserved
    assert unserved.note == (
        "no live graphile-py pool serves it; Node workers are not visible to graphile-py"
    )


@pytest.mark.parametrize("registry", [Registry.EMPTY, Registry.NOT_INSTALLED, Registry.FORBIDDEN])
def test_without_a_registry_the_jobs_tell_what_they_can(registry: Registry) -> None:
    def verdict(running: bool, attempted: bool, age: timedelta | None) -> Service:
        evidence = TaskEvidence(running=running, attempted=attempted, oldest_ready_age=age)
        return judge("t", registry=registry, live={}, evidence=evidence).service

    assert verdict(False, False, LONG_AGO) is Service.UNATTEMPTED
    assert verdict(False, False, UNATTEMPTED_AFTER) is Service.UNKNOWN  # not long enough
    assert verdict(False, False, None) is Service.UNKNOWN  # nothing ready
    assert verdict(False, True, LONG_AGO) is Service.UNKNOWN  # some worker ran one
    assert verdict(True, True, LONG_AGO) is Service.SERVED
    assert judge("t", registry=registry, live={}).service is Service.UNKNOWN
    note = judge("t", registry=registry, live={}).note
    assert note.startswith("graphile-py cannot tell whether a worker serves it (")
