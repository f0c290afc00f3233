"""Shadow traffic: the production version's requests run again on the candidate, after the
answer, where no user waits for it.

    shadow = Shadow(run_candidate, sample_rate=1.0, max_images=256, observe=..., capture=...)
    shadow.offer(target, pixels, production_probabilities)  # in the request, after the answer

The policy:

1. **Never in the user's way.** :meth:`Shadow.offer` only puts the request's images and
   answers in a bounded queue (``put_nowait``: no wait, no exception reaches the request).
   A thread of its own takes them out, a batch at a time, runs the candidate
   (onnxruntime releases the GIL while it runs), compares and records.
2. **Sampled.** A request is shadowed with probability ``sample_rate`` (whole, or not at
   all): 1.0 mirrors every request, 0.1 one in ten.
3. **Bounded, dropped when busy.** The queue holds at most ``max_images`` images; a request
   that finds it full is dropped, and counted (``fmnist_shadow_dropped_total``): when the
   candidate cannot keep up, the service does less shadow work, never more queueing.
4. **What is recorded.** For every shadowed image: whether the candidate predicts the same
   class as production (by production's class), the candidate's run time per call, and,
   for disagreements and inputs production answered with low confidence, the image and
   both answers in a bounded on-disk sample for people to label (:class:`CaptureStore`).

The candidate is whatever ``resolve_candidate(name)`` returns at the time the batch runs, so
a promotion or a new candidate takes effect for the next batch.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CAPTURE_SUFFIX = ".npz"


@dataclass(frozen=True)
class ShadowItem:
    name: str  # the model name; production answered it
    production: str  # production's version
    pixels: np.ndarray  # (n, 28, 28)
    answers: np.ndarray  # production's (n, 10) probabilities


@dataclass(frozen=True)
class Comparison:
    """One shadowed batch, for the metrics and the capture."""

    name: str
    production: str
    candidate: str
    pixels: np.ndarray
    production_answers: np.ndarray
    candidate_answers: np.ndarray
    seconds: float  # the candidate's run time for the batch


# name -> (candidate version, its predict function), or None when it has no candidate now
CandidateSource = Callable[[str], tuple[str, Callable[[np.ndarray], np.ndarray]] | None]


class Shadow:
    """The bounded shadow queue and its thread (see the module)."""

    def __init__(
        self,
        candidate_of: CandidateSource,
        sample_rate: float,
        max_images: int,
        observe: Callable[[Comparison], None],
        dropped: Callable[[str, int], None],
        max_batch: int = 64,
        rng: random.Random | None = None,
    ) -> None:
        self._candidate_of = candidate_of
        self.sample_rate = sample_rate
        self.max_images = max_images
        self._observe = observe
        self._dropped = dropped
        self._max_batch = max_batch
        self._rng = rng or random.Random()
        self._queue: queue.SimpleQueue[ShadowItem | None] = queue.SimpleQueue()
        self._images = 0  # images waiting in the queue
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def offer(self, name: str, production: str, pixels: np.ndarray, answers: np.ndarray) -> bool:
        """Queue a production answer for the candidate; False when sampled out or dropped."""
        if self.sample_rate < 1.0 and self._rng.random() >= self.sample_rate:
            return False
        n = len(pixels)
        with self._lock:
            if self._images + n > self.max_images:
                full = True
            else:
                full = False
                self._images += n
        if full:
            self._dropped(name, n)
            return False
        if self._thread is None:
            self.start()
        self._queue.put(ShadowItem(name, production, pixels, answers))
        return True

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="shadow", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish what is queued, then end the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    @property
    def queued_images(self) -> int:
        return self._images

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            size = len(item.pixels)
            while size < self._max_batch:  # merge what else waits, up to one call's worth
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
                size += len(more.pixels)
            try:
                self._run(batch)
            except Exception:  # a shadow failure is logged, never a user's problem
                log.exception("shadow run failed")
            finally:
                with self._lock:
                    self._images -= size

    def _run(self, batch: list[ShadowItem]) -> None:
        for (name, production), group in itertools.groupby(
            batch, key=lambda i: (i.name, i.production)
        ):
            items = list(group)
            candidate = self._candidate_of(name)
            if candidate is None or candidate[0] == production:
                continue
            version, predict = candidate
            pixels = np.concatenate([i.pixels for i in items])
            start = time.perf_counter()
            answers = predict(pixels)
            seconds = time.perf_counter() - start
            self._observe(
                Comparison(
                    name,
                    production,
                    version,
                    pixels,
                    np.concatenate([i.answers for i in items]),
                    answers,
                    seconds,
                )
            )


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

    @property
    def total_bytes(self) -> int:
        return self._total

    def add(self, reason: str, arrays: dict[str, np.ndarray | str]) -> Path | None:
        """Write one capture; None when a single capture is larger than the bound."""
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
