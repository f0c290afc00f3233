"""The service's batching policy: one micro-batcher per model and worker, owned here.

    batcher = MicroBatcher(run=model.predict, policy=BatchingPolicy(max_batch_size=64))
    probabilities = await batcher.submit(pixels)  # (n, 28, 28) -> (n, 10)

The policy, in the order it is applied to each request:

1. **Bounded queue, fail fast.** A request that finds ``max_queue`` requests already
   waiting is turned away at once with :class:`Overloaded` (the HTTP layer answers 503
   ``overloaded`` with ``Retry-After``), never after a wait. Nothing else is shed, and no
   latency estimate is kept: after any overload the next request is served at the idle
   latency, because the state is only the queue itself.
2. **No wait when idle.** A request that finds the model idle (nothing queued, nothing
   running) runs on the next turn of the event loop, together with whatever else arrived
   in that turn. A batch always takes every request that is waiting when the model is
   free (up to ``max_batch_size`` images), so concurrent requests share calls without
   any wait.
3. **Collect under load (optional).** With ``max_wait`` > 0, while the model is under
   load (its last batch merged two or more requests, or requests queued while it ran), a
   new batch also waits until it holds ``max_batch_size`` images or its oldest request has
   waited ``max_wait``, whichever comes first. A single client sending one request after
   another is never under load, so it never waits. The default is 0: measured at 32
   connections, waiting 2 ms did not raise throughput (docs/performance.md). A batch
   never exceeds ``max_batch_size`` images.
4. **Large requests take turns.** A request of more than ``max_batch_size`` images is
   run a slice of ``max_batch_size`` images at a time, and each next slice goes to the
   back of the queue: requests that arrived meanwhile go first, so a single image waits
   behind one slice of a 1,000-image batch, not behind all of it (round robin; nothing
   starves, since every waiting request gets a turn per round). The request is answered
   when its last slice is done; it takes one place in the queue, whatever its size.
5. **Where it runs.** A batch of at most ``inline_images`` images runs on the event loop
   itself (a ~0.1–2 ms onnxruntime call costs less than a hop to a thread and back); a
   larger one runs in a worker thread, and requests collect meanwhile. One batch runs at
   a time per model and worker.

Framework-free (asyncio only) so that it is tested on a fake model with a controllable
delay (tests/test_batching.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


class Overloaded(RuntimeError):
    """The model's queue is full: the request is turned away without waiting."""

    def __init__(self, model: str, queued: int, retry_after_s: int) -> None:
        super().__init__(
            f"model {model} has {queued} requests queued in this worker (the limit, "
            f"FMNIST_BATCHING_MAX_QUEUE); retry after {retry_after_s} s"
        )
        self.model = model
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class BatchingPolicy:
    max_batch_size: int = 64  # images per onnxruntime call
    max_wait_s: float = 0.0  # how long a request may wait for others under load
    max_queue: int = 256  # requests waiting per model and worker before 503
    inline_images: int = 64  # batches up to this size run on the event loop
    retry_after_s: int = 1  # the Retry-After of a 503


@dataclass
class _Slices:
    """What is left of a request larger than one call (the module, point 4)."""

    rest: np.ndarray  # the images after the slice in the queue
    done: list[np.ndarray]  # the answers to its earlier slices


@dataclass
class _Pending:
    pixels: np.ndarray  # (n, 28, 28): the request's next slice, at most max_batch_size images
    future: asyncio.Future[np.ndarray]
    enqueued: float  # when this slice joined the queue
    slices: _Slices | None = None  # None: the whole request fits one call

    def next_slice(self, size: int) -> None:
        """The next ``size`` images of a large request become its slice in the queue."""
        assert self.slices is not None
        self.pixels, self.slices.rest = self.slices.rest[:size], self.slices.rest[size:]


# What the batcher reports per batch, after the model's call: (the batch's answers (N, 10),
# seconds the oldest request waited, seconds the call took).
BatchObserver = Callable[[np.ndarray, float, float], None]


class MicroBatcher:
    """Merges concurrent requests for one model into onnxruntime batches (see the module)."""

    def __init__(
        self,
        name: str,
        run: Callable[[np.ndarray], np.ndarray],
        policy: BatchingPolicy,
        observe: BatchObserver | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.name = name
        self._run = run
        self.policy = policy
        self._observe = observe
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._queued_images = 0
        self._flush: asyncio.Handle | asyncio.TimerHandle | None = None
        self._running = False
        self._last_run_end = float("-inf")
        self._under_load = False  # the last batch merged requests, or some queued meanwhile

    @property
    def queued(self) -> int:
        """Requests waiting (not counting the batch running now)."""
        return len(self._queue)

    async def submit(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 28, 28) pixels → (n, 10) probabilities, batched with concurrent requests."""
        policy = self.policy
        if len(self._queue) >= policy.max_queue:
            raise Overloaded(self.name, len(self._queue), policy.retry_after_s)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        pending = _Pending(pixels, future, self._clock())
        if len(pixels) > policy.max_batch_size:  # a slice at a time (the module, point 4)
            pending.slices = _Slices(pixels, [])
            pending.next_slice(policy.max_batch_size)
        self._queue.append(pending)
        self._queued_images += len(pending.pixels)
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._running:
            return  # the running batch schedules the next one when it ends
        full = self._queued_images >= self.policy.max_batch_size
        if self._flush is not None:
            if full and isinstance(self._flush, asyncio.TimerHandle):
                self._flush.cancel()  # the batch is full: no reason to wait any longer
                self._flush = loop.call_soon(self._start_batch, loop)
            return
        since_last = self._clock() - self._last_run_end
        if full or not self._under_load or since_last >= self.policy.max_wait_s:
            self._flush = loop.call_soon(self._start_batch, loop)  # no reason to wait
        else:
            wait = self.policy.max_wait_s - since_last
            self._flush = loop.call_later(wait, self._start_batch, loop)

    def _take_batch(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        images = len(batch[0].pixels)
        while self._queue and images + len(self._queue[0].pixels) <= self.policy.max_batch_size:
            item = self._queue.popleft()
            batch.append(item)
            images += len(item.pixels)
        self._queued_images -= images
        return [p for p in batch if not p.future.cancelled()]

    def _start_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush = None
        if not self._queue:
            return
        batch = self._take_batch()
        self._under_load = len(batch) > 1
        if not batch:
            self._after_batch(loop)
            return
        pixels = batch[0].pixels if len(batch) == 1 else np.concatenate([p.pixels for p in batch])
        waited = self._clock() - batch[0].enqueued
        if len(pixels) <= self.policy.inline_images:
            start = self._clock()
            try:
                result = self._run(pixels)
            except Exception as exc:  # the model failed: every request of the batch learns it
                self._fail(batch, exc)
            else:
                self._deliver(batch, result, waited, self._clock() - start)
            self._after_batch(loop)
            return
        self._running = True
        loop.create_task(self._run_in_thread(loop, batch, pixels, waited))

    async def _run_in_thread(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[_Pending],
        pixels: np.ndarray,
        waited: float,
    ) -> None:
        start = self._clock()
        try:
            result = await asyncio.to_thread(self._run, pixels)
        except Exception as exc:
            self._fail(batch, exc)
        else:
            self._deliver(batch, result, waited, self._clock() - start)
        finally:
            self._running = False
            self._after_batch(loop)

    def _after_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._last_run_end = self._clock()
        if self._queue:
            self._under_load = True  # requests arrived while the batch ran
        if self._queue and self._flush is None:
            self._schedule(loop)

    def _deliver(
        self, batch: list[_Pending], result: np.ndarray, waited: float, ran: float
    ) -> None:
        offset = 0
        for pending in batch:
            n = len(pending.pixels)
            answer = result[offset : offset + n]
            offset += n
            if pending.future.done():  # cancelled: the client went away
                continue
            slices = pending.slices
            if slices is None:
                pending.future.set_result(answer)
                continue
            slices.done.append(answer)
            if len(slices.rest) == 0:
                pending.future.set_result(np.concatenate(slices.done))
                continue
            # the next slice joins the back of the queue: whoever waits now goes first
            pending.next_slice(self.policy.max_batch_size)
            pending.enqueued = self._clock()
            self._queue.append(pending)
            self._queued_images += len(pending.pixels)
        if self._observe is not None:
            self._observe(result, waited, ran)

    @staticmethod
    def _fail(batch: list[_Pending], exc: Exception) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(exc)
