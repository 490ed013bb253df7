"""Seed sources: folders, tabular files, and the one-line errors for bad seeds."""

import json
from pathlib import Path

import polars as pl
import pytest

from steps.engines import embedded_gguf
from steps.errors import UserError
from steps.llms.tokenizer import LlamaCppTokenizer, utf8_bytes
from steps.seeds import Seeds, cut_to_tokens, fit_seeds, load_seeds

TEXT = "Bees dance to share where flowers are. Café owners keep hives on the roof."


def test_folder_keeps_text_and_code_apart(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Tides\nThe moon pulls the sea.")
    (tmp_path / "b.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    seeds = load_seeds(str(tmp_path))
    assert [(s.source, s.kind) for s in seeds] == [("a.md", "text"), ("b.py", "code")]
    assert len({s.id for s in seeds}) == 2
    assert seeds.report.skipped == {"unsupported_type": ["ignored.bin"]}


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
                                                 (b"\xff\xfe caf\xe9", "not UTF-8"),
                                                 (b"caf\xe9 au lait", "not UTF-8"),
                                                 (b"\xff\xd8\xff\xe0\x00\x10JFIF", "binary")])
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


def test_other_entries_of_a_folder_are_named_and_counted_by_reason(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text(TEXT)
    (tmp_path / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.txt").write_text("ref")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "copy.md").write_text(TEXT)
    (tmp_path / "sub" / "up").symlink_to(tmp_path, target_is_directory=True)
    seeds = load_seeds(str(tmp_path))
    assert [s.source for s in seeds] == ["one.txt"]
    assert seeds.report.skipped == {
        "broken_link": ["dangling.txt", "loop"], "duplicate": ["sub/copy.md (same text as one.txt)"],
        "hidden": [".DS_Store", ".git/"], "linked_folder": ["sub/up/"],
        "unsupported_type": ["chart.png", "table.csv"]}
    report = seeds.report.as_dict()
    assert report["skipped_total"] == 8 and report["skipped"]["unsupported_type"]["count"] == 2
    summary = seeds.report.summary()
    assert "chart.png" in summary and "loop" in summary and str(tmp_path) not in summary


@pytest.mark.parametrize(("data", "encoding"), [
    (TEXT.encode("utf-8"), None),
    (b"\xef\xbb\xbf" + TEXT.encode("utf-8"), "utf-8 with BOM"),
    (TEXT.encode("utf-16"), "utf-16-le"),  # Python writes the mark of the machine's order
    (b"\xfe\xff" + TEXT.encode("utf-16-be"), "utf-16-be"),
    (TEXT.encode("utf-16-le"), "utf-16-le"),  # no mark: told by the NUL bytes
    (TEXT.encode("utf-16-be"), "utf-16-be"),
    (b"\xff\xfe\x00\x00" + TEXT.encode("utf-32-le"), "utf-32-le"),
])
def test_encodings_give_the_same_text_and_id_and_are_reported(tmp_path: Path, data: bytes,
                                                              encoding: str | None) -> None:
    (tmp_path / "seed.txt").write_bytes(data)
    (seed,) = seeds = load_seeds(str(tmp_path))
    assert seed.text == TEXT
    assert seed.id == load_seeds_text(tmp_path / "plain", TEXT).id
    assert seeds.report.decoded == ({encoding: ["seed.txt"]} if encoding else {})


def load_seeds_text(folder: Path, text: str):  # type: ignore[no-untyped-def]
    folder.mkdir()
    (folder / "x.txt").write_text(text, encoding="utf-8")
    return load_seeds(str(folder))[0]


def test_big_seed_is_read_whole_then_cut_by_tokens_and_reported(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("The tide turns twice a day. " * 400_000)  # 11.2 MB
    (tmp_path / "small.md").write_text(TEXT)
    seeds = load_seeds(str(tmp_path))
    assert len(seeds[0].text) == 11_200_000 and not seeds.report.truncated  # loading never cuts
    fitted = fit_seeds(seeds, utf8_bytes, 4000)
    assert len(fitted[0].text.encode()) <= 4000 and len(fitted[0].text) > 3900
    cut = fitted[0].text
    assert seeds[0].text[len(cut)] == " " and fitted[0].id == seeds[0].id  # at a word boundary
    assert fitted[1] == seeds[1]
    assert fitted.report.as_dict()["truncated"] == {"count": 1, "names": ["big.txt"],
                                                     "budget_tokens": 4000}
    assert "cut to 4000 tokens 1 (big.txt)" in fitted.report.summary()
    assert fit_seeds(fitted, utf8_bytes, 4000).report.truncated == ["big.txt"]  # counted once


@pytest.fixture(scope="module")
def smollm_tokenize():  # type: ignore[no-untyped-def]
    return LlamaCppTokenizer(str(embedded_gguf()))


@pytest.mark.parametrize("text", [
    "黄河是中国第二长的河流，发源于青藏高原，流经九个省区，最后注入渤海。" * 200,  # ~1.3 tokens/char
    "The moon pulls the sea; the tides follow it around the planet. " * 300,
    "Лунное притяжение вызывает приливы и отливы в океанах Земли. " * 300,
    "def add(a, b):\n    return a + b\n\n" * 400,
])
def test_cut_fits_the_engines_tokens(smollm_tokenize, text: str) -> None:  # type: ignore[no-untyped-def]
    budget = 1500
    assert len(smollm_tokenize(text)) > budget
    cut = cut_to_tokens(text, smollm_tokenize, budget)
    assert text.startswith(cut)
    assert budget - 60 <= len(smollm_tokenize(cut)) <= budget  # as long as fits, no longer
    short = text[:200]
    assert cut_to_tokens(short, smollm_tokenize, budget) == short


def test_no_room_for_a_seed_is_one_line() -> None:
    with pytest.raises(UserError, match="no room for a seed"):
        fit_seeds(Seeds(), utf8_bytes, 0)
