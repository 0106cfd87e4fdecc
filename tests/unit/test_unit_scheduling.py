"""PollQueue: a heap with lazy deletion, keyed by execution."""

from __future__ import annotations

import random

import pytest

from drs_poller.core.scheduling import Due, PollQueue


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


def _queue(entries: dict[str, float]) -> PollQueue:
    queue = PollQueue()
    for key, due in entries.items():
        queue.schedule(key, due)
    return queue


def test_empty_queue():
    queue = PollQueue()
    assert len(queue) == 0
    assert "a" not in queue
    assert queue.next_due() is None
    assert queue.due_at("a") is None
    assert queue.pop_due(1e12, window=1e12) == []


def test_pops_in_due_order():
    queue = _queue({"c": 30.0, "a": 10.0, "d": 40.0, "b": 20.0})
    assert len(queue) == 4
    assert queue.next_due() == 10.0
    assert queue.pop_due(100.0) == [Due("a", 10.0), Due("b", 20.0), Due("c", 30.0), Due("d", 40.0)]
    assert len(queue) == 0
    assert queue.next_due() is None


def test_equal_due_times_pop_in_schedule_order():
    queue = _queue({"x": 5.0, "y": 5.0, "z": 5.0})
    assert [due.name for due in queue.pop_due(5.0)] == ["x", "y", "z"]


POPS = [
    # id, now, window, limit, popped keys
    ("nothing due yet", 5.0, 0.0, None, []),
    ("due exactly now", 10.0, 0.0, None, ["a"]),
    ("due before now", 25.0, 0.0, None, ["a", "b"]),
    ("window pulls the near one forward", 10.0, 10.0, None, ["a", "b"]),
    ("window edge is inclusive", 18.0, 2.0, None, ["a", "b"]),
    ("never beyond the window", 18.0, 1.999, None, ["a"]),
    ("window alone, nothing due", 0.0, 10.0, None, ["a"]),
    ("limit", 100.0, 0.0, 2, ["a", "b"]),
    ("limit zero", 100.0, 0.0, 0, []),
    ("limit above what is due", 25.0, 0.0, 5, ["a", "b"]),
    ("everything", 100.0, 0.0, None, ["a", "b", "c"]),
]


@pytest.mark.parametrize(
    ("now", "window", "limit", "keys"),
    [case[1:] for case in POPS],
    ids=[case[0] for case in POPS],
)
def test_pop_due(now, window, limit, keys):
    queue = _queue({"a": 10.0, "b": 20.0, "c": 30.0})
    popped = queue.pop_due(now, window=window, limit=limit)
    assert [due.name for due in popped] == keys
    assert len(queue) == 3 - len(keys)
    for key in keys:
        assert key not in queue
    for key in {"a", "b", "c"} - set(keys):
        assert key in queue


def test_schedule_of_existing_key_moves_it():
    queue = _queue({"a": 10.0, "b": 20.0})
    queue.schedule("a", 30.0)
    assert len(queue) == 2
    assert queue.due_at("a") == 30.0
    assert queue.next_due() == 20.0
    assert queue.pop_due(15.0) == []
    assert queue.pop_due(100.0) == [Due("b", 20.0), Due("a", 30.0)]
    assert queue.pop_due(1000.0) == []


def test_schedule_earlier_moves_it_forward():
    queue = _queue({"a": 50.0, "b": 20.0})
    queue.schedule("a", 5.0)
    assert queue.next_due() == 5.0
    assert queue.pop_due(100.0) == [Due("a", 5.0), Due("b", 20.0)]


def test_reschedule_to_the_same_time_does_not_duplicate():
    queue = _queue({"a": 10.0})
    queue.schedule("a", 10.0)
    queue.schedule("a", 10.0)
    assert len(queue) == 1
    assert queue.pop_due(10.0) == [Due("a", 10.0)]
    assert queue.pop_due(10.0) == []


def test_discard():
    queue = _queue({"a": 10.0, "b": 20.0})
    queue.discard("a")
    queue.discard("a")  # twice is fine
    queue.discard("never-scheduled")
    assert "a" not in queue
    assert len(queue) == 1
    assert queue.due_at("a") is None
    assert queue.next_due() == 20.0
    assert queue.pop_due(100.0) == [Due("b", 20.0)]


def test_discard_then_schedule_again():
    queue = _queue({"a": 10.0})
    queue.discard("a")
    queue.schedule("a", 10.0)
    assert queue.pop_due(10.0) == [Due("a", 10.0)]
    assert len(queue) == 0


def test_next_due_skips_stale_entries():
    queue = _queue({"a": 1.0, "b": 2.0, "c": 3.0})
    queue.schedule("a", 9.0)
    queue.discard("b")
    assert queue.next_due() == 3.0
    queue.discard("c")
    assert queue.next_due() == 9.0
    queue.discard("a")
    assert queue.next_due() is None


def test_limit_does_not_count_stale_entries():
    queue = _queue({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    queue.discard("a")
    queue.schedule("b", 50.0)
    assert queue.pop_due(10.0, limit=1) == [Due("c", 3.0)]
    assert queue.pop_due(10.0, limit=1) == [Due("d", 4.0)]


def test_many_reschedules_stay_correct_and_bounded():
    rng = _rng(7)
    keys = [f"exec-{n}" for n in range(10)]
    queue = PollQueue()
    latest: dict[str, float] = {}
    for _ in range(10_000):
        key = rng.choice(keys)
        due = rng.uniform(0.0, 1000.0)
        queue.schedule(key, due)
        latest[key] = due
    assert len(queue) == len(latest) == 10
    assert len(queue._heap) <= 2 * 10 + 64  # compaction keeps the heap bounded
    assert queue.next_due() == min(latest.values())
    for key, due in latest.items():
        assert queue.due_at(key) == due
    popped = queue.pop_due(1000.0)
    assert popped == sorted((Due(k, d) for k, d in latest.items()), key=lambda e: e.due)
    assert len(queue) == 0
    assert queue.next_due() is None


def test_many_reschedules_with_discards_and_pops():
    rng = _rng(11)
    queue = PollQueue()
    model: dict[str, float] = {}
    for step in range(5_000):
        key = f"k{rng.randrange(10)}"
        action = rng.random()
        if action < 0.7:
            due = float(rng.randrange(1000))
            queue.schedule(key, due)
            model[key] = due
        elif action < 0.9:
            queue.discard(key)
            model.pop(key, None)
        else:
            now = float(rng.randrange(1000))
            popped = queue.pop_due(now, limit=3)
            due_now = sorted(d for d in model.values() if d <= now)[:3]
            assert [entry.due for entry in popped] == due_now, step
            assert all(model[entry.name] == entry.due for entry in popped), step
            assert len({entry.name for entry in popped}) == len(popped), step
            for entry in popped:
                del model[entry.name]
        assert len(queue) == len(model)
        assert queue.next_due() == (min(model.values()) if model else None)


def test_len_and_contains():
    queue = PollQueue()
    queue.schedule("a", 1.0)
    queue.schedule("b", 2.0)
    queue.schedule("a", 3.0)
    assert len(queue) == 2
    assert "a" in queue
    assert "b" in queue
    assert "c" not in queue
    assert 1 not in queue
    queue.pop_due(2.0)
    assert "b" not in queue
    assert len(queue) == 1
