"""service/shadow.py: the bounded shadow queue and the bounded capture folder."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np

from service.batching import Overloaded
from service.shadow import CaptureStore, Comparison, Shadow, capture_reasons


def one_hot(classes: list[int], confidence: float = 0.9) -> np.ndarray:
    out = np.full((len(classes), 10), (1 - confidence) / 9, dtype=np.float32)
    out[np.arange(len(classes)), classes] = confidence
    return out


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Comparison] = []
        self.dropped: list[tuple[str, int]] = []

    def observe(self, c: Comparison) -> None:
        self.seen.append(c)

    def drop(self, name: str, n: int) -> None:
        self.dropped.append((name, n))


def candidate_says(cls: int, gate: asyncio.Event | None = None):  # noqa: ANN201
    async def predict(pixels: np.ndarray) -> np.ndarray:
        if gate is not None:
            await gate.wait()
        return one_hot([cls] * len(pixels))

    return lambda name: ("cand", predict) if name == "baseline" else None


def test_every_offered_image_is_compared_with_the_candidate() -> None:
    async def scenario() -> Recorder:
        rec = Recorder()
        shadow = Shadow(candidate_says(3), 1.0, 100, rec.observe, rec.drop)
        pixels = np.zeros((5, 28, 28), np.uint8)
        assert shadow.offer("baseline", "prod", pixels, one_hot([3, 3, 1, 3, 0]))
        assert rec.seen == []  # offer only starts the work: nothing ran in the caller
        await shadow.drain()
        assert shadow.queued_images == 0
        return rec

    rec = asyncio.run(scenario())
    (got,) = rec.seen
    assert (got.name, got.production, got.candidate) == ("baseline", "prod", "cand")
    assert got.candidate_answers.argmax(axis=1).tolist() == [3] * 5
    assert got.production_answers.argmax(axis=1).tolist() == [3, 3, 1, 3, 0]
    assert got.seconds >= 0 and rec.dropped == []


def test_a_full_shadow_drops_and_counts_instead_of_waiting() -> None:
    async def scenario() -> Recorder:
        rec = Recorder()
        gate = asyncio.Event()  # the candidate is stuck until the gate opens
        shadow = Shadow(candidate_says(1, gate), 1.0, 8, rec.observe, rec.drop)
        pixels, answers = np.zeros((4, 28, 28), np.uint8), one_hot([1] * 4)
        accepted = [shadow.offer("baseline", "p", pixels, answers) for _ in range(5)]
        assert accepted == [True, True, False, False, False]  # 8 images fit, no more
        assert rec.dropped == [("baseline", 4)] * 3
        gate.set()
        await shadow.drain()
        assert shadow.offer("baseline", "p", pixels, answers)  # room again
        await shadow.drain()
        return rec

    rec = asyncio.run(scenario())
    assert sum(len(c.pixels) for c in rec.seen) == 12


def test_a_candidate_that_turns_work_away_counts_as_dropped() -> None:
    async def overloaded(pixels: np.ndarray) -> np.ndarray:
        raise Overloaded("baseline", 256, 1)

    async def scenario() -> Recorder:
        rec = Recorder()
        shadow = Shadow(lambda n: ("cand", overloaded), 1.0, 100, rec.observe, rec.drop)
        shadow.offer("baseline", "p", np.zeros((3, 28, 28)), one_hot([0, 0, 0]))
        await shadow.drain()
        return rec

    rec = asyncio.run(scenario())
    assert rec.dropped == [("baseline", 3)] and rec.seen == []


def test_sampling_shadows_about_the_rate() -> None:
    async def scenario() -> int:
        rec = Recorder()
        shadow = Shadow(candidate_says(0), 0.1, 10_000, rec.observe, rec.drop, random.Random(1))
        offered = sum(
            shadow.offer("baseline", "p", np.zeros((1, 28, 28)), one_hot([0])) for _ in range(2000)
        )
        await shadow.drain()
        return offered

    assert 140 <= asyncio.run(scenario()) <= 260  # 10 % of 2,000, with room for chance


def test_no_candidate_or_the_same_version_no_comparison() -> None:
    async def scenario() -> Recorder:
        rec = Recorder()
        shadow = Shadow(candidate_says(0), 1.0, 100, rec.observe, rec.drop)
        assert not shadow.offer("deeper", "p", np.zeros((2, 28, 28)), one_hot([0, 1]))
        assert not shadow.offer("baseline", "cand", np.zeros((2, 28, 28)), one_hot([0, 1]))
        await shadow.drain()
        return rec

    assert asyncio.run(scenario()).seen == []


def test_capture_reasons() -> None:
    production = np.vstack([one_hot([1]), one_hot([2], 0.3), one_hot([3], 0.3), one_hot([4])])
    candidate = one_hot([1, 2, 5, 6])
    assert capture_reasons(production, candidate, 0.5) == [
        [],
        ["low_confidence"],
        ["disagree", "low_confidence"],
        ["disagree"],
    ]


def capture(store: CaptureStore, seed: int) -> Path | None:
    image = np.random.default_rng(seed).integers(0, 255, (28, 28), dtype=np.uint8)
    return store.add(
        "disagree",
        {
            "image": image,
            "production": one_hot([1])[0],
            "candidate": one_hot([2])[0],
            "model": np.array("baseline"),
            "versions": np.array(["a", "b"]),
        },
    )


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def test_the_capture_never_passes_its_bound_and_keeps_the_newest(tmp_path: Path) -> None:
    bound = 20_000
    store = CaptureStore(tmp_path, bound)
    written = []
    for seed in range(200):
        written.append(capture(store, seed))
        assert folder_bytes(tmp_path) <= bound  # after every write, not only at the end
    kept = sorted(tmp_path.iterdir())
    assert 5 < len(kept) < 200 and store.total_bytes == folder_bytes(tmp_path)
    assert kept[-1] == written[-1]  # the oldest went first
    with np.load(kept[0]) as npz:  # every kept file is whole
        assert npz["image"].shape == (28, 28) and npz["image"].dtype == np.uint8
        assert npz["production"].argmax() == 1 and npz["candidate"].argmax() == 2
        assert list(npz["versions"]) == ["a", "b"]


def test_a_crash_leaves_no_partial_capture_and_a_restart_keeps_the_bound(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path, 30_000)
    for seed in range(10):
        capture(store, seed)
    (tmp_path / ".capture-interrupted.npz").write_bytes(b"half a file")  # a crash mid-write
    again = CaptureStore(tmp_path, 30_000)  # the next start
    assert not list(tmp_path.glob(".capture-*"))
    assert again.total_bytes == folder_bytes(tmp_path)
    for seed in range(100):
        capture(again, seed)
    assert folder_bytes(tmp_path) <= 30_000


def test_a_capture_larger_than_the_bound_is_not_kept(tmp_path: Path) -> None:
    store = CaptureStore(tmp_path, 100)
    assert capture(store, 0) is None
    assert list(tmp_path.iterdir()) == []


def test_rate_zero_never_offers() -> None:
    shadow = Shadow(candidate_says(0), 0.0, 100, lambda c: None, lambda n, k: None)
    assert not shadow.offer("baseline", "p", np.zeros((1, 28, 28)), one_hot([0]))
