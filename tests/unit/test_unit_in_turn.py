"""engine/polling.in_turn: a batch's writes by a few writers, not a task each."""

from __future__ import annotations

import asyncio
import weakref

import pytest

from drs_poller.engine.polling import in_turn


@pytest.mark.parametrize(
    ("items", "workers", "most_at_once"),
    [
        (0, 16, 0),
        (1, 16, 1),
        (5, 16, 5),
        (100, 16, 16),
        (10_000, 16, 16),
        (7, 1, 1),
    ],
)
async def test_each_item_once_in_order_and_never_more_than_the_workers(
    items: int, workers: int, most_at_once: int
) -> None:
    started: list[int] = []
    running = peak = 0

    async def work(item: int) -> None:
        nonlocal running, peak
        started.append(item)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)  # a write that waits: the others go on meanwhile
        running -= 1

    tasks_before = len(asyncio.all_tasks())
    await in_turn(list(range(items)), workers=workers, work=work)
    assert started == list(range(items))
    assert peak == most_at_once
    assert len(asyncio.all_tasks()) == tasks_before


async def test_each_item_is_let_go_once_its_work_is_done() -> None:
    # A batch's answers for an execution are freed when it is written, not with the last.
    class Answers:
        pass

    items = [Answers() for _ in range(5)]
    refs = [weakref.ref(item) for item in items]
    alive_at_last: list[int] = []

    async def work(item: Answers) -> None:
        if item is refs[-1]():
            alive_at_last.extend(n for n, ref in enumerate(refs) if ref() is not None)
        await asyncio.sleep(0)

    await in_turn(items, workers=1, work=work)

    assert items == []
    assert alive_at_last == [4]
