"""The batching policy (service/batching.py) on a fake model with a controllable delay."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.batching import BatchingPolicy, MicroBatcher, Overloaded


class FakeModel:
    """Answers row i with a one-hot of (pixel[0, 0] mod 10); records every batch size.

    ``gate`` (when set) makes each call wait until it is released: a model that is slow
    for as long as the test wants.
    """

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.gate = gate
        self.fail = fail

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        self.batches.append(len(pixels))
        if self.gate is not None:
            assert self.gate.wait(10), "the test never released the model"
        if self.fail:
            raise RuntimeError("model exploded")
        out = np.zeros((len(pixels), 10), dtype=np.float32)
        out[np.arange(len(pixels)), pixels[:, 0, 0].astype(int) % 10] = 1.0
        return out


def image(value: int, n: int = 1) -> np.ndarray:
    return np.full((n, 28, 28), value, dtype=np.uint8)


def run(coro):  # noqa: ANN001, ANN201 (asyncio.run for tests)
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


def test_an_idle_model_runs_a_request_at_once_even_with_a_long_max_wait() -> None:
    model = FakeModel()
    batcher = MicroBatcher("m", model, BatchingPolicy(max_wait_s=5.0))

    async def go() -> float:
        start = time.perf_counter()
        out = await batcher.submit(image(3))
        assert out.argmax(axis=1).tolist() == [3]
        return time.perf_counter() - start

    assert run(go()) < 1.0  # far below max_wait: nothing waited for company
    assert model.batches == [1]


def test_requests_arriving_together_share_one_call_and_each_gets_its_own_rows() -> None:
    model = FakeModel()
    batcher = MicroBatcher("m", model, BatchingPolicy(max_batch_size=64, max_wait_s=0.0))

    async def go() -> list[list[int]]:
        outs = await asyncio.gather(*(batcher.submit(image(v, n=1 + v % 3)) for v in range(10)))
        return [o.argmax(axis=1).tolist() for o in outs]

    answers = run(go())
    assert answers == [[v] * (1 + v % 3) for v in range(10)]
    assert model.batches == [sum(1 + v % 3 for v in range(10))]  # one call for all 20 images


def test_under_load_a_batch_collects_until_max_wait_or_max_batch_size() -> None:
    model = FakeModel()
    policy = BatchingPolicy(max_batch_size=4, max_wait_s=0.4)
    batcher = MicroBatcher("m", model, policy)

    async def go() -> tuple[float, float]:
        # Two requests at once: the batch merged two, so the model is "under load" now.
        await asyncio.gather(batcher.submit(image(1)), batcher.submit(image(1)))
        start = time.perf_counter()
        await asyncio.gather(*(batcher.submit(image(2)) for _ in range(2)))
        waited_partial = time.perf_counter() - start
        start = time.perf_counter()
        await asyncio.gather(*(batcher.submit(image(2)) for _ in range(4)))
        waited_full = time.perf_counter() - start
        return waited_partial, waited_full

    waited_partial, waited_full = run(go())
    assert 0.3 < waited_partial < 2.0  # two images waited for company, about max_wait
    assert waited_full < 0.3  # a full batch (4 = max_batch_size) does not wait
    assert model.batches == [2, 2, 4]


def test_one_client_after_another_never_waits_even_with_a_max_wait() -> None:
    model = FakeModel()
    batcher = MicroBatcher("m", model, BatchingPolicy(max_batch_size=4, max_wait_s=0.4))

    async def go() -> float:
        start = time.perf_counter()
        for v in range(5):  # sequential: each finds the model idle
            assert (await batcher.submit(image(v))).argmax() == v
        return time.perf_counter() - start

    assert run(go()) < 0.4  # five requests in less than one max_wait
    assert model.batches == [1, 1, 1, 1, 1]


def test_the_default_policy_never_waits() -> None:
    assert BatchingPolicy().max_wait_s == 0.0
    assert (BatchingPolicy().max_batch_size, BatchingPolicy().max_queue) == (64, 256)


def test_a_batch_never_exceeds_max_batch_size_and_a_large_request_runs_in_slices() -> None:
    model = FakeModel()
    batcher = MicroBatcher("m", model, BatchingPolicy(max_batch_size=8, max_wait_s=0.0))

    async def go() -> tuple[np.ndarray, ...]:
        return await asyncio.gather(
            batcher.submit(image(1, n=5)),
            batcher.submit(image(2, n=5)),
            batcher.submit(np.concatenate([image(v) for v in range(20)])),
            batcher.submit(image(4, n=3)),
        )

    outs = run(go())
    assert max(model.batches) <= 8 and sum(model.batches) == 33
    # every request gets its own rows back, the sliced one in its order
    assert [o.argmax(axis=1).tolist() for o in outs] == [
        [1] * 5,
        [2] * 5,
        [v % 10 for v in range(20)],
        [4] * 3,
    ]


def test_a_large_request_takes_turns_so_a_single_image_waits_for_one_slice_only() -> None:
    """Round robin: the 20-image request runs as 8 + 8 + 4, and an image that arrives while
    the first slice runs goes before the second slice."""
    model = FakeModel(threading.Event())
    policy = BatchingPolicy(max_batch_size=8, max_wait_s=0.0, inline_images=0)
    batcher = MicroBatcher("m", model, policy)
    finished: list[str] = []

    async def tagged(name: str, pixels: np.ndarray) -> np.ndarray:
        out = await batcher.submit(pixels)
        finished.append(name)
        return out

    async def go() -> np.ndarray:
        large = asyncio.ensure_future(tagged("large", image(7, n=20)))
        await asyncio.sleep(0.05)  # its first slice is in the (gated) model now
        assert model.batches == [8]
        assert batcher.queued == 0  # the rest of it is not queued until its turn
        single = asyncio.ensure_future(tagged("single", image(3)))
        await asyncio.sleep(0.05)
        assert batcher.queued == 1
        assert model.gate is not None
        model.gate.set()
        await single
        return await large

    large = run(go())
    assert model.batches == [8, 1, 8, 4]
    assert finished == ["single", "large"]
    assert large.shape == (20, 10) and set(large.argmax(axis=1).tolist()) == {7}


def test_a_failing_slice_fails_its_request_and_no_later_slice_runs() -> None:
    model = FakeModel(fail=True)
    batcher = MicroBatcher("m", model, BatchingPolicy(max_batch_size=4, max_wait_s=0.0))

    async def go() -> None:
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit(image(1, n=10))

    run(go())
    assert model.batches == [4]


def test_a_full_queue_turns_requests_away_at_once_and_the_model_recovers() -> None:
    gate = threading.Event()
    model = FakeModel(gate)
    # inline_images=0: every batch runs in a thread, so the event loop stays free while
    # the gated model "computes" and requests pile up in the queue.
    policy = BatchingPolicy(max_batch_size=1, max_wait_s=0.0, max_queue=2, inline_images=0)
    batcher = MicroBatcher("m", model, policy)

    async def go() -> tuple[float, int, list[np.ndarray], float]:
        running = asyncio.ensure_future(batcher.submit(image(1)))
        await asyncio.sleep(0.05)  # the first request is in the model now
        queued = [asyncio.ensure_future(batcher.submit(image(2))) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert batcher.queued == 2
        start = time.perf_counter()
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(image(3))
        refused_after = time.perf_counter() - start
        gate.set()
        done = await asyncio.gather(running, *queued)
        start = time.perf_counter()
        await batcher.submit(image(4))
        return refused_after, refused.value.retry_after_s, done, time.perf_counter() - start

    refused_after, retry_after, done, idle_after = run(go())
    assert refused_after < 0.05  # immediate, not after the running batch
    assert retry_after == 1
    assert [d.argmax(axis=1).tolist() for d in done] == [[1], [2], [2]]
    assert idle_after < 0.5  # no memory of the overload
    assert model.batches == [1, 1, 1, 1]


def test_a_model_error_reaches_every_request_of_the_batch_and_the_next_batch_runs() -> None:
    model = FakeModel(fail=True)
    batcher = MicroBatcher("m", model, BatchingPolicy(max_wait_s=0.0))

    async def go() -> list[BaseException | np.ndarray]:
        outs = await asyncio.gather(
            *(batcher.submit(image(1)) for _ in range(3)), return_exceptions=True
        )
        model.fail = False
        outs.append(await batcher.submit(image(5)))
        return outs

    outs = run(go())
    assert all(isinstance(o, RuntimeError) for o in outs[:3])
    assert isinstance(outs[3], np.ndarray) and outs[3].argmax() == 5


def test_the_observer_sees_the_answers_queue_wait_and_run_time() -> None:
    seen: list[tuple[np.ndarray, float, float]] = []
    batcher = MicroBatcher(
        "m", FakeModel(), BatchingPolicy(max_wait_s=0.0), observe=lambda *a: seen.append(a)
    )

    async def go() -> None:
        await asyncio.gather(*(batcher.submit(image(v)) for v in (1, 2, 3)))

    run(go())
    assert len(seen) == 1
    answers, waited, ran = seen[0]
    assert answers.shape == (3, 10) and answers.argmax(axis=1).tolist() == [1, 2, 3]
    assert 0 <= waited < 1.0 and 0 <= ran < 1.0


def test_the_run_time_is_the_model_call_alone() -> None:
    """What the observer is told the model took is the call itself: neither the queueing
    before it nor the observer's own bookkeeping (fmnist_inference_seconds)."""
    now = [0.0]
    model = FakeModel()

    def slow_model(pixels: np.ndarray) -> np.ndarray:
        now[0] += 5.0  # the model takes 5 s of the fake clock
        return model(pixels)

    seen: list[float] = []

    def observe(answers: np.ndarray, waited: float, ran: float) -> None:
        seen.append(ran)
        now[0] += 100.0  # bookkeeping after the call: not the model's time

    batcher = MicroBatcher(
        "m", slow_model, BatchingPolicy(max_wait_s=0.0), observe=observe, clock=lambda: now[0]
    )

    async def go() -> None:
        for v in (1, 2):
            await batcher.submit(image(v))

    run(go())
    assert seen == [5.0, 5.0]
