"""service/shadow.py: the bounded shadow queue and the bounded capture folder."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from service.shadow import CaptureStore, Comparison, Shadow, capture_reasons


def one_hot(classes: list[int], confidence: float = 0.9) -> np.ndarray:
    out = np.full((len(classes), 10), (1 - confidence) / 9, dtype=np.float32)
    out[np.arange(len(classes)), classes] = confidence
    return out


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Comparison] = []
        self.dropped: list[tuple[str, int]] = []
        self.done = threading.Event()
        self.expected = 0

    def observe(self, c: Comparison) -> None:
        self.seen.append(c)
        if sum(len(s.pixels) for s in self.seen) >= self.expected:
            self.done.set()


def candidate_says(cls: int, gate: threading.Event | None = None):  # noqa: ANN201
    def predict(pixels: np.ndarray) -> np.ndarray:
        if gate is not None:
            gate.wait(5)
        return one_hot([cls] * len(pixels))

    return lambda name: ("cand", predict) if name == "baseline" else None


def test_every_offered_image_is_compared_with_the_candidate() -> None:
    rec = Recorder()
    rec.expected = 5
    shadow = Shadow(
        candidate_says(3), 1.0, 100, rec.observe, lambda n, k: rec.dropped.append((n, k))
    )
    pixels = np.zeros((5, 28, 28), np.uint8)
    assert shadow.offer("baseline", "prod", pixels, one_hot([3, 3, 1, 3, 0]))
    assert rec.done.wait(5)
    shadow.stop()
    got = rec.seen[0]
    assert (got.name, got.production, got.candidate) == ("baseline", "prod", "cand")
    assert got.candidate_answers.argmax(axis=1).tolist() == [3] * 5
    assert got.production_answers.argmax(axis=1).tolist() == [3, 3, 1, 3, 0]
    assert got.seconds >= 0 and rec.dropped == []
    assert shadow.queued_images == 0


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    rec = Recorder()
    gate = threading.Event()  # the candidate is stuck until the gate opens
    shadow = Shadow(
        candidate_says(1, gate), 1.0, 8, rec.observe, lambda n, k: rec.dropped.append((n, k))
    )
    pixels = np.zeros((4, 28, 28), np.uint8)
    answers = one_hot([1] * 4)
    accepted = [shadow.offer("baseline", "p", pixels, answers) for _ in range(5)]
    assert accepted[:2] == [True, True] and not any(accepted[2:])  # 8 images fit, no more
    assert rec.dropped == [("baseline", 4)] * 3
    gate.set()
    shadow.stop()
    assert sum(len(c.pixels) for c in rec.seen) == 8


def test_sampling_shadows_about_the_rate() -> None:
    rec = Recorder()
    shadow = Shadow(
        lambda name: None, 0.1, 10_000, rec.observe, lambda n, k: None, rng=random.Random(1)
    )
    offered = sum(
        shadow.offer("baseline", "p", np.zeros((1, 28, 28)), one_hot([0])) for _ in range(2000)
    )
    shadow.stop()
    assert 140 <= offered <= 260  # 10 % of 2,000, with room for chance


def test_no_candidate_no_comparison() -> None:
    rec = Recorder()
    shadow = Shadow(lambda name: None, 1.0, 100, rec.observe, lambda n, k: None)
    shadow.offer("deeper", "p", np.zeros((2, 28, 28)), one_hot([0, 1]))
    shadow.stop()
    assert rec.seen == []


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


@pytest.mark.parametrize("rate", [0.0])
def test_rate_zero_never_offers(rate: float) -> None:
    shadow = Shadow(lambda name: None, rate, 100, lambda c: None, lambda n, k: None)
    assert not shadow.offer("baseline", "p", np.zeros((1, 28, 28)), one_hot([0]))
