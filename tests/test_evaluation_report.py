"""Report rendering, the atomic folder swap, and the verdict texts (no server needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from evaluation.client import ServedPredictions, parse_listing
from evaluation.document import (
    Bullets,
    Document,
    Image,
    Section,
    Table,
    anchors,
    slug,
    to_html,
    to_markdown,
)
from evaluation.metrics import compare_every_pair, compare_models, model_metrics, serving_skew
from evaluation.report import ReportError, earlier_report, write_atomically, write_report
from evaluation.run import DatasetInfo, Evaluation, ModelResult
from evaluation.sections.paired import verdict

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8ffff3f0005fe02fea7d6a4f80000000049454e44ae426082"
)


def test_markdown_and_html_say_the_same_things(tmp_path: Path) -> None:
    (tmp_path / "fig.png").write_bytes(PNG_1PX)
    doc = Document(
        "T",
        [
            Section(
                "S",
                [
                    "plain **bold** <script>",
                    Table(["a|b", "c"], [["1", "2"]], "cap"),
                    Bullets(["x", "y"]),
                    Image("fig.png", "a figure"),
                ],
            )
        ],
    )
    md = to_markdown(doc)
    assert md.startswith("# T\n\n## Contents\n\n- [S](#s)\n\n## S\n\nplain **bold** <script>\n")
    assert "| a\\|b | c |\n|---|---|\n| 1 | 2 |" in md
    assert "- x\n- y" in md and "[![a figure](fig.png)](fig.png)" in md
    html = to_html(doc, tmp_path)
    assert "plain <strong>bold</strong> &lt;script&gt;" in html and "<script>" not in html
    assert "<th>a|b</th>" in html and '<p class="caption">cap</p>' in html
    assert "<li>x</li><li>y</li>" in html
    assert 'src="data:image/png;base64,iVBORw0KGgo' in html and "fig.png" not in html


def test_write_atomically_leaves_nothing_when_filling_fails(tmp_path: Path) -> None:
    def fill(folder: Path) -> None:
        (folder / "report.html").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "out", fill)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_the_earlier_report_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    earlier = json.dumps({"generator": "fmnist-eval", "created": "2026-01-01T00:00:00+00:00"})
    (out / "metrics.json").write_text(earlier)
    (out / "report.html").write_text("earlier")

    def fill(folder: Path) -> None:
        (folder / "metrics.json").write_text("{}")
        (folder / "report.html").write_text("half of the new one")
        raise ReportError("figures missing")

    with pytest.raises(ReportError):
        write_atomically(out, fill)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "metrics.json").read_text() == earlier
    assert (out / "report.html").read_text() == "earlier"
    assert earlier_report(out) == "2026-01-01T00:00:00+00:00"
    assert earlier_report(tmp_path) is None  # no metrics.json: not a report


def test_write_atomically_replaces_an_earlier_report_only(tmp_path: Path) -> None:
    out = tmp_path / "out"

    def fill(text: str):  # noqa: ANN202
        def write(folder: Path) -> None:
            (folder / "metrics.json").write_text(json.dumps({"generator": "fmnist-eval"}))
            (folder / "note").write_text(text)

        return write

    write_atomically(out, fill("first"))
    write_atomically(out, fill("second"))
    assert (out / "note").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # old copy removed
    assert out.stat().st_mode & 0o777 == 0o755

    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(ReportError, match="not an earlier evaluation report"):
        write_atomically(precious, fill("third"))
    assert (precious / "thesis.tex").read_text() == "do not delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out"]


def _served(name: str, labels: np.ndarray, accuracy: float, seed: int) -> ServedPredictions:
    rng = np.random.default_rng(seed)
    pred = np.where(rng.random(len(labels)) < accuracy, labels, (labels + 6) % 10)
    probs = rng.dirichlet(np.ones(10), len(labels)) * 0.3
    probs[np.arange(len(labels)), pred] += 0.7
    return ServedPredictions(name, pred, probs.max(1), probs, 0.5, 3)


def synthetic_evaluation(n: int = 300, official: bool = True, three: bool = False) -> Evaluation:
    """baseline (90 % right, 20 epochs) and deeper (50 %, 3 epochs) on ``n`` random images,
    baseline's skew checked and deeper's not; ``three`` adds improved (80 %, beyond the
    study, temperature-scaled). What the report and browser tests render."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 10
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    entries = [
        {
            "name": "baseline",
            "parameters": 421642,
            "test_accuracy": 0.9,
            "metadata": {"training_config": json.dumps({"epochs": 20})},
            "sha256": "aa",
        },
        {
            "name": "deeper",
            "parameters": 1701130,
            "test_accuracy": 0.5,
            "metadata": {"training_config": {"epochs": 3}},
            "sha256": "bb",
        },
    ]
    accuracy = [("baseline", 0.9, 1), ("deeper", 0.5, 2)]
    if three:
        entries.append(
            {
                "name": "improved",
                "parameters": 584618,
                "test_accuracy": 0.8,
                "metadata": {"temperature": "0.66"},
                "sha256": "cc",
            }
        )
        accuracy.append(("improved", 0.8, 3))
    listing = parse_listing({"models": entries})
    models = {}
    for name, acc, seed in accuracy:
        s = _served(name, labels, acc, seed)
        skew = serving_skew(s.class_index, s.probabilities, s.probabilities, "aa", "aa")
        models[name] = ModelResult(
            name,
            s,
            model_metrics(labels, s.class_index, s.confidence, s.probabilities),
            listing.models[name],
            skew if name == "baseline" else None,
            "" if name == "baseline" else f"no local ONNX file x/{name}.onnx",
        )
    predictions = {name: r.served.class_index for name, r in models.items()}
    return Evaluation(
        "http://svc",
        DatasetInfo("/data", n, official, None),
        images,
        labels,
        models,
        compare_every_pair(predictions, labels),
        "2026-01-01T00:00:00+00:00",
        "fmnist-eval ...",
    )


def test_write_report_produces_every_file_and_section(tmp_path: Path) -> None:
    ev = synthetic_evaluation()
    out = write_report(ev, tmp_path / "report")
    names = {p.name for p in out.iterdir()}
    assert {
        "report.html",
        "report.md",
        "metrics.json",
        "predictions.csv",
        "reliability.png",
        "per_class_accuracy.png",
        "mistakes_deeper.png",
    } <= names
    md = (out / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Headline") < md.index("## Against the study")
    assert "**The data do not support 'the two models perform the same'.** baseline" in md
    assert "The served deeper was trained for 3 epoch(s); the study trained 20" in md
    assert "served baseline was trained" not in md  # 20 epochs: nothing to say
    assert "deeper: not checked (no local ONNX file x/deeper.onnx)" in md
    assert "| baseline | yes | 300 | 0 | 0.00e+00 | 0.00e+00 | no skew |" in md
    assert "not the official Fashion-MNIST test set" not in md
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["generator"] == "fmnist-eval"
    assert metrics["models"]["deeper"]["serving_skew"] == {
        "checked": False,
        "why": "no local ONNX file x/deeper.onnx",
    }
    assert metrics["models"]["baseline"]["metrics"]["accuracy"]["estimate"] == pytest.approx(
        float(np.mean(ev.models["baseline"].served.class_index == ev.labels))
    )
    assert metrics["comparisons"][0]["p_value"] < 1e-6
    csv_rows = (out / "predictions.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 2 * 300 and csv_rows[0].endswith(",p_Bag,p_Ankle boot")


def test_verdict_when_the_data_cannot_tell_the_models_apart() -> None:
    labels = np.zeros(100, dtype=int)
    a = np.array([0] * 90 + [1] * 10)
    b = np.array([0] * 85 + [1] * 5 + [0] * 5 + [1] * 5)  # 5 discordant pairs each way
    text = verdict(compare_models("a", a, "b", b, labels, seed=0))
    assert text.startswith("**The data are consistent with 'the two models perform the same'**")
    assert "p = 1" in text and "not proof of equality" in text


def test_a_perfect_single_model_still_gets_a_report(tmp_path: Path) -> None:
    """No mistakes, no confused pairs, no second model: every section still renders."""
    labels = np.arange(50) % 10
    probs = np.eye(10)[labels]
    served = ServedPredictions("baseline", labels.copy(), probs.max(1), probs, 0.1, 1)
    metrics = model_metrics(labels, labels, probs.max(1), probs)
    ev = Evaluation(
        "http://svc",
        DatasetInfo("/data", 50, False, 50),
        np.zeros((50, 28, 28), np.uint8),
        labels,
        {"baseline": ModelResult("baseline", served, metrics, None, None, "no --onnx-dir given")},
        [],
        "now",
        "cmd",
    )
    md = (write_report(ev, tmp_path / "r") / "report.md").read_text()
    assert metrics.confused_pairs == [] and metrics.ece == pytest.approx(0.0)
    assert "Only one model was evaluated; the paired test needs two." in md
    assert "| baseline | 100.00% [100.00%, 100.00%] |" in md
    assert "Only the first 50 test images were sent" in md
    assert "baseline: not checked (no --onnx-dir given)." in md


def test_slug_is_githubs_heading_anchor() -> None:
    assert slug("Do the models perform the same?") == "do-the-models-perform-the-same"
    assert slug("Model: baseline") == "model-baseline"
    assert slug("  Per-class accuracy side by side ") == "per-class-accuracy-side-by-side"
    assert slug("Shirt accuracy [95% CI]") == "shirt-accuracy-95-ci"


def test_anchors_are_unique_and_the_contents_link_to_them(tmp_path: Path) -> None:
    (tmp_path / "f.png").write_bytes(PNG_1PX)
    doc = Document(
        "T",
        [
            Section("Contents", ["a section named like the contents"]),
            Section("A", ["x"], [Section("Part", ["y"]), Section("Part", [Image("f.png", "c")])]),
            Section("A", ["z"]),
        ],
    )
    ids = anchors(doc)
    assert sorted(ids.values()) == ["a", "a-1", "contents-1", "part", "part-1"]
    md = to_markdown(doc)
    assert "- [A](#a)\n  - [Part](#part)\n  - [Part](#part-1)\n- [A](#a-1)" in md
    assert md.count("\n### Part\n") == 2 and md.count("\n## A\n") == 2

    page = to_html(doc, tmp_path)
    links = re.findall(r'href="#([^"]*)"', page)
    targets = re.findall(r'id="([^"]*)"', page)
    assert len(targets) == len(set(targets))  # ids are unique
    assert set(links) <= set(targets) and set(ids.values()) <= set(links)
    contents = page.split('<nav class="contents" id="contents"', 1)[1].split("</nav>", 1)[0]
    assert re.findall(r'href="#([^"]*)"', contents) == ["contents-1", "a", "part", "part-1", "a-1"]
    assert '<h3 id="part-1">Part<a class="anchor" href="#part-1"' in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    # The figure opens at full size: its image links to the figure itself, which CSS
    # shows as an overlay while it is the URL's target; "close" leaves for its caption.
    assert '<figure id="figure-1"><a class="close" href="#figure-1-caption">' in page
    assert '<a class="open" href="#figure-1" title="open at full size"><img src="data:' in page
    assert 'width="1" height="1"' in page
    assert "figure:target {" in page and "<script" not in page


def test_tables_scroll_in_their_own_box(tmp_path: Path) -> None:
    doc = Document("T", [Section("S", [Table(["a"], [["1"]], "cap"), Table(["b"], [["2"]])])])
    page = to_html(doc, tmp_path)
    assert page.count('<div class="table-scroll"><table>') == 2
    assert ".table-scroll { overflow-x: auto;" in page


def test_each_model_has_its_own_section_with_its_figures_and_tables(tmp_path: Path) -> None:
    ev = synthetic_evaluation(three=True)
    out = write_report(ev, tmp_path / "r")
    md = (out / "report.md").read_text()
    tops = re.findall(r"^## (.+)$", md, flags=re.M)
    assert tops == [
        "Contents",
        "Summary",
        "Headline",
        "Against the study",
        "Comparison of the models",
        "Model: baseline",
        "Model: deeper",
        "Model: improved",
        "Serving skew",
        "This run",
    ]
    comparison = md.split("\n## Comparison of the models\n")[1].split("\n## ")[0]
    assert re.findall(r"^### (.+)$", comparison, flags=re.M) == [
        "Do the models perform the same?",
        "Per-class accuracy side by side",
        "Calibration",
    ]
    assert "](per_class_accuracy.png)" in comparison and "](reliability.png)" in comparison
    for name in ev.models:
        own = md.split(f"\n## Model: {name}\n")[1].split("\n## ")[0]
        assert re.findall(r"^### (.+)$", own, flags=re.M) == [
            f"{name}: per class",
            f"{name}: confusions",
            f"{name}: most confident mistakes",
        ]
        figures = re.findall(r"\]\((\w+\.png)\)\]", own)
        assert figures == [
            f"confusion_{name}.png",
            f"confused_pairs_{name}.png",
            f"mistakes_{name}.png",
        ]
        shirt = ev.models[name].metrics.per_class[6]
        assert f"| Shirt | 30 | {shirt.accuracy * 100:.1f}% |" in own
        assert "| true class | predicted as | images | share of the true class |" in own
        # Nothing of another model in this model's section.
        assert not any(f"_{other}.png" in own for other in ev.models if other != name)
    assert "| Shirt | 30 | 74.3% |" in md.split("\n## Model: improved\n")[0]  # study's beside
    assert "study acc." not in md.split("\n## Model: improved\n")[1].split("\n## ")[0]


def test_the_reliability_caption_describes_the_figure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The caption once spoke of a green line the figure never had: hold it to the figure."""
    from matplotlib.colors import to_hex

    from evaluation import plots

    drawn = {}
    save = plots._save

    def keep(fig, path):  # noqa: ANN001, ANN202
        drawn[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    out = write_report(synthetic_evaluation(), tmp_path / "r")
    top, below = drawn["reliability.png"].axes[:2]
    colours = {to_hex(p.get_facecolor(), keep_alpha=False) for p in below.patches}
    assert colours == {to_hex("tab:gray")}  # grey bars, the share of images
    assert not below.get_lines()  # and no line at all
    assert {to_hex(p.get_facecolor(), keep_alpha=False) for p in top.patches} == {
        to_hex("tab:blue")
    }
    for name in ("report.md", "report.html"):
        text = (out / name).read_text()
        assert "green" not in text
        assert "blue bars are the accuracy" in text and "grey bars are the share" in text
