"""scripts/mutation_score.py: the score per module and overall, and its exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "mutation_score.py"
KILLED, SURVIVED, TIMEOUT = 1, 0, 36  # mutmut's exit codes (mutmut.stats)


def write_run(mutants: Path, outcomes: dict[str, list[int]]) -> None:
    for module, codes in outcomes.items():
        meta = mutants / f"{module}.meta"
        meta.parent.mkdir(parents=True, exist_ok=True)
        by_key = {f"{module}__mutmut_{i}": code for i, code in enumerate(codes)}
        meta.write_text(json.dumps({"exit_code_by_key": by_key}))


def score(mutants: Path, least: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--mutants", str(mutants), "--min", str(least)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def run(tmp_path: Path) -> Path:
    # 19 of 20 detected in a.py (95 %), 3 of 4 in b.py (75 %): 22 of 24 overall (91.7 %).
    write_run(
        tmp_path,
        {
            "pkg/a.py": [KILLED] * 18 + [TIMEOUT, SURVIVED],
            "pkg/b.py": [KILLED, KILLED, TIMEOUT, SURVIVED],
        },
    )
    return tmp_path


def test_scores_per_module_and_overall(run: Path) -> None:
    result = score(run, 70)
    assert result.returncode == 0, result.stdout
    rows = {line.split()[0]: line.split()[-1] for line in result.stdout.splitlines()[1:]}
    assert rows == {"pkg/a.py": "95.0%", "pkg/b.py": "75.0%", "all": "91.7%"}


def test_one_weak_module_fails_although_the_overall_score_passes(run: Path) -> None:
    result = score(run, 85)
    assert result.returncode == 1
    assert "mutation score of pkg/b.py 75.0% is under 85%" in result.stdout
    assert "pkg/a.py 95.0% is under" not in result.stdout
    assert "of all" not in result.stdout


def test_a_low_overall_score_fails(run: Path) -> None:
    result = score(run, 96)
    assert result.returncode == 1
    assert "mutation score of all 91.7% is under 96%" in result.stdout


def test_no_run_to_read(tmp_path: Path) -> None:
    result = score(tmp_path, 85)
    assert result.returncode == 2
    assert "no mutmut results" in result.stdout
