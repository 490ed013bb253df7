"""The dataset card: Hub-parsable metadata, configs that `datasets` loads, honest statistics."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import datasets
import polars as pl
import pytest
from huggingface_hub import DatasetCard
from publish_fixtures import FAILED, LAYOUT, REMOVED, build_repo

from steps.errors import UserError
from steps.magpie.rows import MAGPIE_SCHEMA
from steps.publish import card as card_module
from steps.publish import scrub_secrets, write_card
from steps.publish.scrub import REDACTED, scrub_text
from steps.publish.tokens import WHITESPACE_WORDS, token_counter
from steps.repo_folder import FAILURES, RUN_FILE
from steps.rows import FAILURE_SCHEMA, ROW_SCHEMA


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    folder = tmp_path / "repo"
    counts = build_repo(folder)
    write_card(folder, repo_id="someone/mix")
    return folder, counts


def test_every_config_loads_with_datasets(repo: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    folder, counts = repo
    metadata = DatasetCard.load(folder / "README.md").data
    names = [entry["config_name"] for entry in metadata.configs]
    assert sorted(names) == sorted([*counts, "default"])
    row_features = datasets.Features.from_arrow_schema(ROW_SCHEMA)
    for name in names:
        loaded = datasets.load_dataset(str(folder), name=name, split="train",
                                       cache_dir=str(tmp_path / "cache"))
        if name == "default":
            assert loaded.num_rows == sum(n for c, n in counts.items() if c != FAILURES)
            assert loaded.features == row_features
        elif name == FAILURES:
            assert loaded.num_rows == len(FAILED)
            assert loaded.features == datasets.Features.from_arrow_schema(FAILURE_SCHEMA)
        else:
            assert loaded.num_rows == counts[name]
            schema = MAGPIE_SCHEMA if name == "magpie" else ROW_SCHEMA
            assert loaded.features == datasets.Features.from_arrow_schema(schema)
            assert set(loaded["config"]) == {name}


def test_default_holds_every_row_config_including_magpie(repo: tuple[Path, dict[str, int]]) -> None:
    """Magpie rows carry tag columns; `default` reads the shared columns, so they are in the mix
    as the card says (every config except failures/reviewed)."""
    folder, counts = repo
    default = next(c for c in DatasetCard.load(folder / "README.md").data.configs
                   if c["config_name"] == "default")
    assert default["columns"] == ROW_SCHEMA.names
    assert "data/magpie/train-*.parquet" in default["data_files"][0]["path"]
    text = (folder / "README.md").read_text()
    assert "every config below except `failures`/`reviewed`" in text
    assert "`magpie` adds columns of its own" in text


def test_card_metadata_is_what_the_hub_reads(repo: tuple[Path, dict[str, int]]) -> None:
    folder, _ = repo
    data = DatasetCard.load(folder / "README.md").data.to_dict()
    assert data["license"] == "other"
    assert data["language"] == ["en"]
    assert data["task_categories"] == ["text-generation"]
    assert data["size_categories"] == ["n<1K"]
    assert {"synthetic", "distilabel", "agentinstruct", "magpie"} <= set(data["tags"])
    assert "rest-em" not in data["tags"]  # no ReST-EM rows in this run
    assert data["pretty_name"]
    default = next(c for c in data["configs"] if c["config_name"] == "default")
    assert sorted(default["data_files"][0]["path"]) == sorted(
        f"data/{c}/train-*.parquet" for c in LAYOUT)


def test_card_reports_funnel_failures_and_run(repo: tuple[Path, dict[str, int]]) -> None:
    folder, counts = repo
    text = (folder / "README.md").read_text()
    for config in ("rc", "mcq"):
        removed = sum(n for _, _, n in REMOVED[config])
        failed = sum(1 for c, *_ in FAILED if c == config)
        row = (f"| `{config}` | {failed} | {counts[config] + removed} | {removed} | "
               f"{counts[config]} | {counts[config]} |")
        assert row in text
    for stage, reason, n in REMOVED["rc"]:
        assert f"| {stage} | {reason} | {n} |" in text
    assert "⚠️" not in text  # the fixture's funnel adds up
    run = json.loads((folder / RUN_FILE).read_text())
    assert run["command"] in text
    assert run["taxonomy_version"] in text
    assert "Tiny model" in text  # embedded-model runs say so
    assert "Not decontaminated" in text  # no decontamination stage in this funnel
    assert "@article{mitra2024agentinstruct" in text and "@article{xu2024magpie" in text
    assert "singh2024beyond" not in text  # no ReST-EM rows in this run


def test_card_cites_only_the_methods_the_run_used(tmp_path: Path) -> None:
    """An AgentInstruct-only run (orca3_mix without Magpie rows) cited Magpie and ReST-EM too."""
    folder = tmp_path / "repo"
    build_repo(folder)
    shutil.rmtree(folder / "data" / "magpie")
    run = json.loads((folder / RUN_FILE).read_text())
    (folder / RUN_FILE).write_text(json.dumps({**run, "flows": ["agentinstruct"]}))
    write_card(folder)
    text = (folder / "README.md").read_text()
    assert re.findall(r"@article\{(\w+),", text) == ["mitra2024agentinstruct"]


def test_rendering_prints_nothing_off_a_terminal(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The transient progress bar left a blank line in the run's piped output."""
    build_repo(tmp_path)
    write_card(tmp_path)
    assert capsys.readouterr().out == ""


def test_inconsistent_funnel_is_flagged(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    build_repo(folder)
    funnel = pl.read_parquet(folder / "funnel.parquet")
    bumped = pl.when((pl.col("config") == "rc") & (pl.col("stage") == "output"))
    funnel.with_columns(rows=bumped.then(pl.col("rows") + 1).otherwise(pl.col("rows"))).write_parquet(
        folder / "funnel.parquet")
    write_card(folder)
    assert "⚠️" in (folder / "README.md").read_text()


def test_plots_are_pngs_embedded_by_relative_path(repo: tuple[Path, dict[str, int]]) -> None:
    folder, _ = repo
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (folder / "README.md").read_text())
    assert sorted(embedded) == sorted(p.relative_to(folder).as_posix()
                                      for p in (folder / "plots").glob("*.png"))
    for path in embedded:
        assert (folder / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (folder / path).stat().st_size < 200_000


def test_rerender_is_byte_identical(repo: tuple[Path, dict[str, int]]) -> None:
    """An unchanged folder must re-render to the same bytes, or every re-push would commit."""
    folder, _ = repo
    files = ["README.md", *(p.relative_to(folder).as_posix() for p in (folder / "plots").glob("*"))]
    before = {f: (folder / f).read_bytes() for f in files}
    write_card(folder, repo_id="someone/mix")
    assert {f: (folder / f).read_bytes() for f in files} == before


def test_token_statistics_match_the_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "repo"
    build_repo(folder)
    monkeypatch.setattr(card_module, "token_counter", lambda: WHITESPACE_WORDS)
    write_card(folder)
    text = (folder / "README.md").read_text()
    assert "whitespace-separated words" in text
    rows = pl.read_parquet(folder / "data" / "rc" / "train-00000-of-00001.parquet").to_dicts()
    responses = [sum(len(m["content"].split()) for m in r["messages"] if m["role"] == "assistant")
                 for r in rows]
    line = next(line for line in text.splitlines() if line.startswith("| `rc` | 5 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert float(cells[7]) == round(sum(responses) / len(responses), 1)  # response mean
    assert int(cells[10]) == max(responses)  # response max


def test_token_counter_agrees_with_llama_tokenize() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    from steps.engines import embedded_gguf

    counter = token_counter()
    reference = llama_cpp.Llama(model_path=str(embedded_gguf()), vocab_only=True, verbose=False)
    texts = ["Hello there!", "déjà vu 😀\n```py\nx = 1\n```", "", None, "word " * 300]
    counted = pl.DataFrame({"text": texts}).select(counter.expr("text"))["text"].to_list()
    assert counted == [len(reference.tokenize(t.encode(), add_bos=False, special=False)) if t else 0
                       for t in texts]


def test_answers_at_the_teacher_token_limit_are_counted(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")  # the count needs the model's own tokenizer
    folder = tmp_path / "repo"
    build_repo(folder)
    counter = token_counter()
    lengths = pl.concat(
        pl.read_parquet(path).explode("messages").unnest("messages")
        .filter(pl.col("role") == "assistant").with_columns(tokens=counter.expr("content"))
        .group_by("id").agg(pl.col("tokens").sum())
        for path in (folder / "data").glob("[!f]*/*.parquet")  # every config but failures
    )["tokens"]
    limit = int(lengths.median())
    run = json.loads((folder / RUN_FILE).read_text())
    run["engines"]["teacher"]["generation"]["max_new_tokens"] = limit
    (folder / RUN_FILE).write_text(json.dumps(run))
    write_card(folder)
    expected = int((lengths >= limit).sum())
    assert f"{expected} of {len(lengths)} rows have responses that reached" in (
        folder / "README.md").read_text()


def test_review_status_is_shown(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    build_repo(folder)
    rc = {"rows": 5, "reviewed": 4, "kept": 3, "discarded": 1, "corrected": 1, "pending": 1}
    mcq = {"rows": 4, "reviewed": 0, "kept": 0, "discarded": 0, "corrected": 0, "pending": 4}
    totals = {key: rc[key] + mcq[key] for key in rc}
    (folder / "review.json").write_text(json.dumps(
        {**totals, "agreement": 0.75, "configs": {"rc": rc, "mcq": mcq}}))
    write_card(folder)
    text = (folder / "README.md").read_text()
    assert "| `rc` | 5 | 4 | 3 | 1 | 1 | 1 |" in text
    assert "| **all** | 9 | 4 | 3 | 1 | 1 | 5 |" in text
    assert "agreement between reviewers: 0.75" in text
    assert "No reviewed rows have been exported" in text  # review.json but no `reviewed` config


def test_generation_parameters_come_from_rows_when_run_json_lacks_them(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    build_repo(folder)
    run = json.loads((folder / RUN_FILE).read_text())
    for engine in run["engines"].values():
        del engine["generation"]
    (folder / RUN_FILE).write_text(json.dumps(run))
    write_card(folder)
    text = (folder / "README.md").read_text()
    assert "| `embedded` | max_new_tokens=384, seed=7 |" in text  # agent, from the rows
    assert "| `embedded` | seed=7, temperature=0.0 |" in text  # teacher


def test_run_where_everything_failed_still_gets_a_card(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    build_repo(folder)
    for config in LAYOUT:
        shutil.rmtree(folder / "data" / config)
    write_card(folder)
    metadata = DatasetCard.load(folder / "README.md").data
    assert [c["config_name"] for c in metadata.configs] == [FAILURES]
    assert "every item failed or was filtered out" in (folder / "README.md").read_text()


def test_card_without_run_json_still_renders(tmp_path: Path) -> None:
    folder = tmp_path / "repo"
    build_repo(folder)
    (folder / RUN_FILE).unlink()
    write_card(folder)
    assert "no `run.json`" in (folder / "README.md").read_text()


def test_empty_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no data/<config>"):
        write_card(tmp_path)


def test_no_secret_reaches_the_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    openai_key = "sk-" + "a1B2" * 8
    monkeypatch.setenv("ARGILLA_API_KEY", "argilla.key-from-env-123")
    secrets = {"openai_api_key": openai_key, "hf_token": "hf_" + "Q" * 30,
               "argilla_url": "http://admin:hunter2pass@localhost:6900",
               "note": "key from env: argilla.key-from-env-123"}
    folder = tmp_path / "repo"
    build_repo(folder, config={"skills": ["rc"], **secrets})
    run = json.loads((folder / RUN_FILE).read_text())
    run["command"] = f"python pipelines/orca3_mix.py --hf-token {'hf_' + 'Z' * 30} --openai-api-key=x1"
    (folder / RUN_FILE).write_text(json.dumps(run))
    write_card(folder)
    text = (folder / "README.md").read_text()
    for leaked in [openai_key, "hf_" + "Q" * 30, "hunter2pass", "argilla.key-from-env-123",
                   "hf_" + "Z" * 30, "=x1"]:
        assert leaked not in text
    assert "skills:" in text and REDACTED in text  # the config is shown, with secrets redacted


def test_scrub_secrets_keeps_counts_and_names() -> None:
    config = {"max_new_tokens": 256, "tokens": {"input": 3}, "tokenizer_id": "x/y", "hf_token": None,
              "engines": [{"api_key": "abc12345", "base_url": "https://u:p4ss@h/v1"}]}
    scrubbed = scrub_secrets(config)
    assert scrubbed["max_new_tokens"] == 256 and scrubbed["tokens"] == {"input": 3}
    assert scrubbed["tokenizer_id"] == "x/y"
    assert scrubbed["hf_token"] is None  # unset stays visible as unset
    assert scrubbed["engines"][0]["api_key"] == REDACTED
    assert "p4ss" not in scrubbed["engines"][0]["base_url"]
    command = "run --max-new-tokens 5 --hf-token abc"
    assert scrub_text(command) == f"run --max-new-tokens 5 --hf-token {REDACTED}"


def test_no_local_path_reaches_the_card(tmp_path: Path) -> None:
    """run.json of an older run held absolute paths; the card shows them portable."""
    folder = tmp_path / "repo"
    home = str(Path.home() / "someone" / "work")
    build_repo(folder, config={"seeds": f"{home}/seeds/sample", "output_dir": str(tmp_path / "out"),
                               "engine": f"llamacpp:{home}/models/m.gguf"})
    run = json.loads((folder / RUN_FILE).read_text())
    run["seeds"]["source"] = f"{home}/seeds/sample"
    run["command"] = f"python {home}/pipelines/orca3_mix.py --output-dir {tmp_path}/out"
    run["engines"]["teacher"]["spec"] = "openai:m@http://gpu-box-17.internal:8000/v1"
    (folder / RUN_FILE).write_text(json.dumps(run))
    write_card(folder)
    text = (folder / "README.md").read_text()
    assert home not in text and str(tmp_path) not in text and "gpu-box-17" not in text
    assert "llamacpp:m.gguf" in text and "http://<host>/v1" in text and "orca3_mix.py" in text
