"""Seed sources: folders, tabular files, and the one-line errors for bad seeds."""

import json
from pathlib import Path

import polars as pl
import pytest

from steps.errors import UserError
from steps.seeds import load_seeds


def test_folder_keeps_text_and_code_apart(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Tides\nThe moon pulls the sea.")
    (tmp_path / "b.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    seeds = load_seeds(str(tmp_path))
    assert [(s.source, s.kind) for s in seeds] == [("a.md", "text"), ("b.py", "code")]
    assert len({s.id for s in seeds}) == 2


def test_same_text_same_id_from_any_source(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.txt").write_text("Bees dance to share where flowers are.")
    (tmp_path / "s.jsonl").write_text(json.dumps({"text": "Bees dance to share where flowers are."}))
    assert load_seeds(str(tmp_path / "docs"))[0].id == load_seeds(str(tmp_path / "s.jsonl"))[0].id


def test_parquet_with_named_column(tmp_path: Path) -> None:
    pl.DataFrame({"body": ["one text", "two text"]}).write_parquet(tmp_path / "s.parquet")
    with pytest.raises(UserError, match="--text-column"):
        load_seeds(str(tmp_path / "s.parquet"))
    assert [s.text for s in load_seeds(str(tmp_path / "s.parquet"), "body")] == ["one text",
                                                                                 "two text"]


@pytest.mark.parametrize(("content", "needle"), [(b"", "is empty"), (b"  \n", "is empty"),
                                                 (b"PK\x03\x04\x00\x00", "binary"),
                                                 (b"\xff\xfe caf\xe9", "not UTF-8")])
def test_bad_seed_file_is_named_in_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "bad.txt").write_bytes(content)
    with pytest.raises(UserError) as error:
        load_seeds(str(tmp_path))
    message = str(error.value)
    assert "bad.txt" in message and needle in message and "\n" not in message


def test_unreachable_hub_dataset_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="cannot load Hub dataset 'nobody/no-such-seeds'"):
        load_seeds("nobody/no-such-seeds")


def test_missing_path_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a folder"):
        load_seeds(str(tmp_path / "nope"))
