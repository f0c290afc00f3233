"""Shadow traffic: the production version's requests run again on the candidate, after the
answer, where no user waits for it.

    shadow = Shadow(candidate_of, sample_rate=1.0, max_images=256, observe=..., dropped=...)
    shadow.offer(name, production_version, pixels, production_probabilities)  # after the answer

The policy:

1. **Never in the user's way.** :meth:`Shadow.offer` is called with production's answer in
   hand; it only starts a task and returns (no wait, and no exception reaches the request).
   The task runs the candidate through a micro-batcher of its own (service/batching.py),
   so concurrent shadowed requests share onnxruntime calls, and the candidate's answers
   never count in the production model's metrics.
2. **Sampled.** A request is shadowed with probability ``sample_rate`` (whole, or not at
   all): 1.0 mirrors every request, 0.1 one in ten.
3. **Bounded, dropped when busy.** At most ``max_images`` images are in the shadow at once
   (per worker); a request that would pass that is dropped, and counted
   (``fmnist_shadow_dropped_total``), as is one the candidate's queue turns away: when the
   candidate cannot keep up, the service does less shadow work, never more queueing.
4. **What is recorded.** For every shadowed image: whether the candidate predicts the same
   class as production (by production's class), the candidate's latency, and, for
   disagreements and inputs production answered with low confidence, the image and both
   answers in a bounded on-disk sample for people to label (:class:`CaptureStore`,
   written off the event loop).

The candidate is whatever ``candidate_of(name)`` returns when the request is offered, so a
promotion or a new candidate takes effect for the next request. Measured first as a
thread of its own: the hand-offs between it and the event loop cost 14 % of throughput at
10 % sampling (benchmarks/shadow_cost.py); on the event loop, batched, it costs less.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.batching import Overloaded

log = logging.getLogger(__name__)

CAPTURE_SUFFIX = ".npz"


@dataclass(frozen=True)
class Comparison:
    """One shadowed request, for the metrics and the capture."""

    name: str
    production: str
    candidate: str
    pixels: np.ndarray
    production_answers: np.ndarray
    candidate_answers: np.ndarray
    seconds: float  # the candidate's latency for this request (its queue and its run)


Predict = Callable[[np.ndarray], Awaitable[np.ndarray]]
# name -> (candidate version, its shadow predict), or None when it has no candidate now
CandidateSource = Callable[[str], tuple[str, Predict] | None]


class Shadow:
    """The bounded shadow of one worker (see the module)."""

    def __init__(
        self,
        candidate_of: CandidateSource,
        sample_rate: float,
        max_images: int,
        observe: Callable[[Comparison], None],
        dropped: Callable[[str, int], None],
        rng: random.Random | None = None,
    ) -> None:
        self._candidate_of = candidate_of
        self.sample_rate = sample_rate
        self.max_images = max_images
        self._observe = observe
        self._dropped = dropped
        self._rng = rng or random.Random()
        self._images = 0  # images in the shadow now
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued_images(self) -> int:
        return self._images

    def offer(self, name: str, production: str, pixels: np.ndarray, answers: np.ndarray) -> bool:
        """Shadow a production answer on the candidate; False when not (sampled out, no
        candidate, or dropped because the shadow is full)."""
        if self.sample_rate < 1.0 and self._rng.random() >= self.sample_rate:
            return False
        candidate = self._candidate_of(name)
        if candidate is None or candidate[0] == production:
            return False
        n = len(pixels)
        if self._images + n > self.max_images:
            self._dropped(name, n)
            return False
        self._images += n
        task = asyncio.get_running_loop().create_task(
            self._run(name, production, candidate, pixels, answers)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self) -> None:
        """Wait for every shadowed request in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(
        self,
        name: str,
        production: str,
        candidate: tuple[str, Predict],
        pixels: np.ndarray,
        answers: np.ndarray,
    ) -> None:
        version, predict = candidate
        try:
            start = time.perf_counter()
            theirs = await predict(pixels)
            seconds = time.perf_counter() - start
            self._observe(Comparison(name, production, version, pixels, answers, theirs, seconds))
        except Overloaded:
            self._dropped(name, len(pixels))
        except Exception:  # a shadow failure is logged, never a user's problem
            log.exception("shadow run of %s@%s failed", name, version)
        finally:
            self._images -= len(pixels)


class CaptureStore:
    """A bounded folder of inputs for people to label: one ``.npz`` per image with the
    28×28 image, both answers and both versions.

    Never larger than ``max_bytes``: before a file is added the oldest are removed until it
    fits. Never a corrupt file: each is written to a hidden temporary file in the same
    folder, flushed, then renamed into place (a crash leaves at most a temporary file,
    removed at the next start).
    """

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".capture-*"):
            stale.unlink(missing_ok=True)
        self._files = sorted(
            (p for p in self.folder.glob(f"*{CAPTURE_SUFFIX}")), key=lambda p: p.name
        )
        self._sizes = {p: p.stat().st_size for p in self._files}
        self._total = sum(self._sizes.values())
        self._counter = itertools.count()
        self._lock = threading.Lock()  # captures are written from a thread pool

    @property
    def total_bytes(self) -> int:
        return self._total

    def add(self, reason: str, arrays: dict[str, np.ndarray | str]) -> Path | None:
        """Write one capture; None when a single capture is larger than the bound."""
        with self._lock:
            return self._add(reason, arrays)

    def _add(self, reason: str, arrays: dict[str, np.ndarray | str]) -> Path | None:
        fd, tmp = tempfile.mkstemp(prefix=".capture-", suffix=CAPTURE_SUFFIX, dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
                out.flush()
                os.fsync(out.fileno())
            size = os.path.getsize(tmp)
            if size > self.max_bytes:
                Path(tmp).unlink()
                return None
            while self._files and self._total + size > self.max_bytes:
                oldest = self._files.pop(0)
                self._total -= self._sizes.pop(oldest)
                oldest.unlink(missing_ok=True)
            final = self.folder / f"{time.time_ns():020d}-{next(self._counter):06d}-{reason}.npz"
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._files.append(final)
        self._sizes[final] = size
        self._total += size
        return final


def capture_reasons(
    production: np.ndarray, candidate: np.ndarray, low_confidence: float
) -> list[list[str]]:
    """Why each image is worth a person's look: ``disagree`` and/or ``low_confidence``."""
    p_top, c_top = production.argmax(axis=1), candidate.argmax(axis=1)
    low = production.max(axis=1) < low_confidence
    reasons = []
    for disagree, unsure in zip((p_top != c_top).tolist(), low.tolist(), strict=True):
        why = []
        if disagree:
            why.append("disagree")
        if unsure:
            why.append("low_confidence")
        reasons.append(why)
    return reasons
