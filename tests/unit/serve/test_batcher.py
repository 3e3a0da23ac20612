"""The micro-batcher: concurrent jobs share batches, keys and the token budget keep them apart, failures stay local.

No test waits on a clock: the runner holds the worker on an event while jobs queue up, so what ends up in which
batch is decided by the queue, not by timing.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from nmt.serve.batcher import MicroBatcher


class Recorder:
    """A runner that doubles numbers, records every batch, and blocks its first batch until released."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[tuple[object, list[int]]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.fail_on = fail_on

    def __call__(self, key, items):
        self.batches.append((key, list(items)))
        self.started.set()
        self.release.wait(10)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot run {self.fail_on}")
        return [2 * x for x in items]


async def _run(recorder: Recorder, jobs: list[tuple[object, list[int], int]], **kwargs) -> list:
    """Submit a blocker job, then ``jobs`` while the worker is held, then release; returns every job's outcome."""
    batcher = MicroBatcher(recorder, max_wait=0.05, **kwargs)
    await batcher.start()
    try:
        first = asyncio.create_task(batcher.submit("block", [0], 1))
        await asyncio.get_running_loop().run_in_executor(None, recorder.started.wait, 10)
        tasks = [asyncio.create_task(batcher.submit(key, items, tokens)) for key, items, tokens in jobs]
        await asyncio.sleep(0)  # let every submit reach the queue
        recorder.release.set()
        return [await first, *await asyncio.gather(*tasks, return_exceptions=True)]
    finally:
        await batcher.close()


def test_jobs_queued_together_run_as_one_batch_and_results_split_back_in_order():
    rec = Recorder()
    jobs = [("k", [1, 2], 3), ("k", [3], 2), ("k", [4, 5, 6], 4)]
    results = asyncio.run(_run(rec, jobs))
    assert results == [[0], [2, 4], [6], [8, 10, 12]]
    assert rec.batches == [("block", [0]), ("k", [1, 2, 3, 4, 5, 6])]


def test_jobs_with_other_options_are_never_batched_together_and_keep_their_order():
    rec = Recorder()
    jobs = [("a", [1], 1), ("b", [2], 1), ("a", [3], 1), ("b", [4], 1), ("c", [5], 1)]
    results = asyncio.run(_run(rec, jobs))
    assert results[1:] == [[2], [4], [6], [8], [10]]
    assert rec.batches[1:] == [("a", [1, 3]), ("b", [2, 4]), ("c", [5])]


def test_the_token_budget_closes_a_batch_and_a_job_over_it_runs_alone():
    rec = Recorder()
    jobs = [("k", [1], 4), ("k", [2], 5), ("k", [3], 6), ("k", [4], 30), ("k", [5], 3)]
    asyncio.run(_run(rec, jobs, max_tokens=10))
    # first come, first served: a job that does not fit closes the batch (no later job overtakes it)
    assert [items for _, items in rec.batches[1:]] == [[1, 2], [3], [4], [5]]


def test_a_failing_job_fails_alone_and_the_others_of_its_batch_succeed():
    rec = Recorder(fail_on=3)
    results = asyncio.run(_run(rec, [("k", [1], 1), ("k", [3], 1), ("k", [5], 1)]))
    assert results[1] == [2] and results[3] == [10]
    assert isinstance(results[2], ValueError) and "cannot run 3" in str(results[2])
    # the shared batch failed once, then each job ran alone
    assert [items for _, items in rec.batches[1:]] == [[1, 3, 5], [1], [3], [5]]


def test_submit_before_start_and_bad_settings_are_errors():
    with pytest.raises(ValueError, match="max_tokens"):
        MicroBatcher(lambda k, x: x, max_tokens=0)

    async def early():
        await MicroBatcher(lambda k, x: x).submit("k", [1], 1)

    with pytest.raises(RuntimeError, match="start"):
        asyncio.run(early())


def test_the_batches_run_in_the_thread_the_model_was_loaded_in():
    # nmt-serve loads the model in this thread so that all torch work stays in one OpenMP team (see model_thread).
    from nmt.serve.batcher import model_thread

    worker = model_thread()
    loaded_in = worker.submit(threading.get_ident).result()
    ran_in: list[int] = []

    def runner(key, items):
        ran_in.append(threading.get_ident())
        return items

    async def go() -> list:
        batcher = MicroBatcher(runner, executor=worker)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit("k", [i], 1) for i in range(3)))
        finally:
            await batcher.close()

    assert asyncio.run(go()) == [[0], [1], [2]]
    assert ran_in and set(ran_in) == {loaded_in} != {threading.get_ident()}
