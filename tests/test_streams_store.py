"""The stream store on a real SQLite file: one runner per processor, state transitions, durable numbering."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from faceprint.streams.store import FAILED, RUNNING, STARTING, STOPPED, STOPPING, LeaseLostError, StreamStore

CONFIG = {"Settings": {"FaceSearch": {"CollectionId": "c"}}}


def test_exactly_one_runner_holds_a_processor(tmp_path: Path) -> None:
    first, second = StreamStore(tmp_path), StreamStore(tmp_path)  # two processes' handles on one home
    first.create("p", CONFIG, "cam", "c", "out", max_processors=10)
    first.transition("p", (STOPPED,), STARTING)
    claimed = first.claim("host:1:a", lease_seconds=0.5)
    assert [p.name for p in claimed] == ["p"] and claimed[0].status == STARTING
    assert second.claim("host:2:b", lease_seconds=0.5) == []  # held, lease alive
    first.mark("p", "host:1:a", RUNNING)
    time.sleep(0.6)  # the first runner stops renewing: its lease expires
    taken = second.claim("host:2:b", lease_seconds=5)
    assert [p.name for p in taken] == ["p"]
    assert taken[0].status == STARTING and "resuming" in (taken[0].status_message or "")
    with pytest.raises(LeaseLostError):
        first.append("p", "host:1:a", "out", b"{}")
    assert second.append("p", "host:2:b", "out", b"{}") == 1


def test_states_and_records_outlive_trimming(tmp_path: Path) -> None:
    store = StreamStore(tmp_path)
    store.create("p", CONFIG, "cam", "c", "out", max_processors=1)
    with pytest.raises(KeyError):
        store.create("p", CONFIG, "cam", "c", "out", max_processors=5)
    with pytest.raises(OverflowError):
        store.create("q", CONFIG, "cam", "c", "out", max_processors=1)
    with pytest.raises(ValueError):
        store.stop("p")  # STOPPED: nothing to stop
    store.transition("p", (STOPPED,), STARTING)
    owner = "host:1:a"
    store.claim(owner)
    with pytest.raises(ValueError):
        store.delete("p")  # running
    numbers = [store.append("p", owner, "out", b'{"n": %d}' % i) for i in range(3)]
    assert numbers == [1, 2, 3]
    assert store.stop("p").status == STOPPING  # a live runner holds it: it finishes the stop
    store.release("p", owner, FAILED, "ignored: a stop was asked")
    assert store.get("p").status == STOPPED
    assert store.trim(retention_seconds=0) == 3 and store.records("out", 0, 10) == []
    store.transition("p", (STOPPED,), STARTING)
    store.claim(owner)
    assert store.append("p", owner, "out", b"{}") == 4  # numbers are never reused
    store.release("p", owner, FAILED, "the source dropped")
    assert store.get("p").status_message == "the source dropped"
    store.delete("p")
    assert store.get("p") is None and store.output_created("out") is not None
