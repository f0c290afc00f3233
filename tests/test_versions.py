"""service/versions.py: what ``model=name@selector`` resolves to, and the aliases file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.validation import InputError
from service.versions import (
    AliasError,
    Routing,
    Target,
    aliases_path,
    check_aliases,
    parse_aliases,
    read_aliases,
    split_reference,
    write_aliases,
)

VERSIONS = {"baseline": ("aaaaaaaaaaaa", "bbbbbbbbbbbb"), "deeper": ("dddddddddddd",)}


def routing() -> Routing:
    table = {"baseline": {"production": "aaaaaaaaaaaa", "candidate": "bbbbbbbbbbbb"}}
    return Routing(VERSIONS, check_aliases(table, VERSIONS, "test"), "baseline")


def test_split_reference() -> None:
    assert split_reference("baseline") == ("baseline", None)
    assert split_reference("baseline@candidate") == ("baseline", "candidate")
    assert split_reference("baseline@") == ("baseline", "")


@pytest.mark.parametrize(
    ("raw", "target"),
    [
        (None, Target("baseline", "aaaaaaaaaaaa", "production")),
        ("", Target("baseline", "aaaaaaaaaaaa", "production")),
        ("baseline", Target("baseline", "aaaaaaaaaaaa", "production")),
        ("baseline@production", Target("baseline", "aaaaaaaaaaaa", "production")),
        ("baseline@candidate", Target("baseline", "bbbbbbbbbbbb", "candidate")),
        ("baseline@bbbbbbbbbbbb", Target("baseline", "bbbbbbbbbbbb", None)),
        ("deeper", Target("deeper", "dddddddddddd", "production")),
    ],
)
def test_a_request_resolves_to_a_version(raw: str | None, target: Target) -> None:
    assert routing().resolve(raw) == target


@pytest.mark.parametrize(
    "raw", ["nope", "baseline@previous", "baseline@cccccccccccc", 7, "deeper@candidate"]
)
def test_anything_not_served_is_a_404_that_lists_what_is(raw: object) -> None:
    with pytest.raises(InputError) as caught:
        routing().resolve(raw)
    assert caught.value.status == 404 and caught.value.reason == "unknown_model"
    assert "baseline" in caught.value.detail or "deeper@" in caught.value.detail


def test_a_name_with_one_version_gets_it_as_production_and_has_no_candidate() -> None:
    r = routing()
    assert r.aliases["deeper"] == {"production": "dddddddddddd"}
    assert r.candidate_of("deeper") is None
    assert r.candidate_of("baseline") == "bbbbbbbbbbbb"
    assert r.aliases_of("baseline", "bbbbbbbbbbbb") == ["candidate"]


def test_a_candidate_equal_to_production_is_no_candidate() -> None:
    table = {"baseline": {"production": "aaaaaaaaaaaa", "candidate": "aaaaaaaaaaaa"}}
    r = Routing(VERSIONS, check_aliases(table, VERSIONS, "t"), "baseline")
    assert r.candidate_of("baseline") is None


def test_an_alias_naming_a_missing_version_is_one_line_naming_it() -> None:
    with pytest.raises(
        AliasError, match=r"baseline@candidate names version ffffffffffff.*aaaaaaaaaaaa"
    ):
        check_aliases(
            {"baseline": {"production": "aaaaaaaaaaaa", "candidate": "ffffffffffff"}}, VERSIONS, "f"
        )


def test_several_versions_and_no_production_alias_is_refused() -> None:
    with pytest.raises(
        AliasError, match="2 versions .* no production alias .*fmnist-promote baseline@"
    ):
        check_aliases({}, VERSIONS, "aliases.json")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[1, 2]", "not an aliases file"),
        ('{"baseline": {"champion": "aaaaaaaaaaaa"}}', "champion"),
        ('{"baseline": {"production": 3}}', "not an aliases file"),
        ('{"baseline": {"production": "Not A Version!"}}', "expected a version"),
        ("{not json", "not an aliases file"),
    ],
)
def test_a_malformed_aliases_file_is_one_line(text: str, words: str) -> None:
    with pytest.raises(AliasError) as caught:
        parse_aliases(text, "aliases.json")
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_write_then_read_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "aliases.json"
    assert read_aliases(path) == {}  # a missing file is no aliases
    table = {"baseline": {"production": "aaaaaaaaaaaa", "previous": "bbbbbbbbbbbb"}}
    write_aliases(path, table)
    assert read_aliases(path) == table
    assert json.loads(path.read_text()) == table
    assert [p.name for p in tmp_path.iterdir()] == ["aliases.json"]


def test_where_the_aliases_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert aliases_path(tmp_path / "x.json", tmp_path) == tmp_path / "x.json"
    assert aliases_path(None, tmp_path) == tmp_path / "aliases.json"
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    assert aliases_path(None, None) == tmp_path / "home" / "fmnist-aliases.json"


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_no_model_named_is_the_default_models_production(raw: str | None) -> None:
    one = {"baseline": ("aaaaaaaaaaaa",), "deeper": ("dddddddddddd",)}
    r = Routing(one, check_aliases({}, one, "t"), "deeper")
    assert r.resolve(raw) == Target("deeper", "dddddddddddd", "production")


@pytest.mark.parametrize("raw", ["resnet", 3, ["baseline"]])
def test_an_unknown_model_is_a_404_with_one_line(raw: object) -> None:
    with pytest.raises(InputError) as caught:
        routing().resolve(raw)
    assert (caught.value.status, caught.value.reason, caught.value.detail) == (
        404,
        "unknown_model",
        f"model {raw!r} is not served (expected one of baseline, deeper, optionally with "
        "@production, @candidate or @<version>)",
    )
