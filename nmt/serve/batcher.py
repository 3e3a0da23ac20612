"""Dynamic micro-batching: requests that arrive together run as one batch in one worker thread.

The model is called from a single worker thread (a model is not thread-safe, and its alignment setting is global),
fed from an asyncio queue. The batching loop takes the first waiting job, then gathers every job with the same key
(the same kind of work and the same options) that arrives within ``max_wait`` seconds, up to ``max_tokens`` source
tokens, and hands the concatenated items to the worker; jobs with another key wait, in arrival order, for a later
batch. The wait counts from the first job's arrival or from the end of the previous batch, whichever is later:
while the worker runs a batch new requests queue up, so under load batches grow by themselves, and the clients just
answered (who send their next request at once) join the next batch instead of splitting the stream into two
alternating half-size batches. This is the scheme of Ray Serve's ``@serve.batch`` and Triton's dynamic batcher,
with a token budget instead of a request count, since sentences differ in length.

If a batch of several jobs fails, each job is rerun alone, so a request that breaks the model fails by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Runner = Callable[[Hashable, list[Any]], Sequence[Any]]


def model_thread() -> ThreadPoolExecutor:
    """The one worker thread that runs the model; load the model in it too (``submit(load).result()``).

    Why load there: OpenMP gives every thread that runs a parallel region its own team of threads. A model loaded
    (or warmed up) in the main thread and run in a worker leaves two teams on the cores, and GNU OpenMP then stops
    its threads spinning between parallel regions: on a 2-core machine one sentence took 88 ms in the worker
    against 34 ms when all torch work stayed in one thread.
    """
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="nmt-worker")


@dataclass
class _Job:
    key: Hashable
    items: list[Any]
    tokens: int
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What the batcher has done (``GET /health`` shows it)."""

    batches: int = 0
    jobs: int = 0
    items: int = 0
    largest_batch_items: int = 0


class MicroBatcher:
    """Group concurrent jobs into batches run by ``runner`` in one worker thread.

    Args:
        runner: ``runner(key, items) -> results``, one result per item, in order; runs in the worker thread.
        max_tokens: the token budget of a batch (a job over it runs alone).
        max_wait: seconds a batch waits for more jobs after its first one.

    Use inside a running event loop: ``await start()``, ``await submit(...)``, ``await close()``.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        max_tokens: int = 4096,
        max_wait: float = 0.005,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        if max_tokens < 1 or max_wait < 0:
            raise ValueError(f"max_tokens must be positive and max_wait >= 0, got {max_tokens}, {max_wait}")
        self.runner, self.max_tokens, self.max_wait = runner, max_tokens, max_wait
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._deferred: deque[_Job] = deque()  # jobs with another key than the batch being gathered
        self._task: asyncio.Task | None = None
        self._free_since = 0.0  # when the worker finished its last batch (time.perf_counter)
        self._executor = executor or model_thread()

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="nmt-batcher")

    async def close(self) -> None:
        """Stop gathering; jobs still waiting fail with :class:`RuntimeError`; the worker finishes its batch."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pending = list(self._deferred)
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the service is shutting down"))
        self._executor.shutdown(wait=True)

    async def submit(self, key: Hashable, items: list[Any], tokens: int) -> list[Any]:
        """Queue ``items`` (``tokens`` source tokens in all) under ``key``; returns their results, in order.

        Raises whatever the runner raised for them.
        """
        if self._queue is None:
            raise RuntimeError("the batcher is not running (await start() first)")
        if not items:
            return []
        job = _Job(key, list(items), max(tokens, 1), asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    # ----------------------------------------------------------------------------------------- internals
    async def _next_job(self, timeout: float | None) -> _Job | None:
        assert self._queue is not None
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return None if self._queue.empty() else self._queue.get_nowait()
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _gather(self) -> list[_Job]:
        """The next batch: the oldest job, then same-key jobs until the budget or the deadline."""
        first = self._deferred.popleft() if self._deferred else await self._next_job(None)
        batch, tokens = [first], first.tokens
        # Deferred jobs arrived earlier than anything in the queue: they join first (same key, within budget).
        keep: deque[_Job] = deque()
        while self._deferred:
            job = self._deferred.popleft()
            if job.key == first.key and tokens + job.tokens <= self.max_tokens:
                batch.append(job)
                tokens += job.tokens
            else:
                keep.append(job)
        self._deferred = keep
        # From the later of the first job's arrival and the end of the last batch (see the module docstring).
        deadline = max(first.arrived, self._free_since) + self.max_wait
        while tokens < self.max_tokens:
            job = await self._next_job(deadline - time.perf_counter())
            if job is None:
                break
            if job.key == first.key and tokens + job.tokens <= self.max_tokens:
                batch.append(job)
                tokens += job.tokens
            else:
                self._deferred.append(job)
                if job.key == first.key:  # over the budget: this batch is full
                    break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            batch = [job for job in batch if not job.future.done()]  # a client that went away was cancelled
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._run, batch)
            except Exception as e:
                self._free_since = time.perf_counter()
                if len(batch) == 1:
                    _fail(batch[0], e)
                    continue
                log.warning("a batch of %d requests failed (%s); running them one by one", len(batch), e)
                for job in batch:
                    try:
                        (result,) = await loop.run_in_executor(self._executor, self._run, [job])
                        _succeed(job, result)
                    except Exception as e1:
                        _fail(job, e1)
                continue
            self._free_since = time.perf_counter()
            for job, result in zip(batch, results):
                _succeed(job, result)

    def _run(self, batch: list[_Job]) -> list[list[Any]]:
        """In the worker thread: one runner call over all items; the results split back per job."""
        items = [item for job in batch for item in job.items]
        results = list(self.runner(batch[0].key, items))
        if len(results) != len(items):
            raise RuntimeError(f"the runner returned {len(results)} results for {len(items)} items")
        self.stats.batches += 1
        self.stats.jobs += len(batch)
        self.stats.items += len(items)
        self.stats.largest_batch_items = max(self.stats.largest_batch_items, len(items))
        out, k = [], 0
        for job in batch:
            out.append(results[k : k + len(job.items)])
            k += len(job.items)
        return out


def _succeed(job: _Job, result: Any) -> None:
    if not job.future.done():
        job.future.set_result(result)


def _fail(job: _Job, error: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(error)
