"""The Magpie pipeline end to end with the embedded model: N conversations from no seeds, for
batch sizes that do not divide N, single- and multi-turn, and the CLI's repository folder."""

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hub_double import HubDouble
from huggingface_hub import DatasetCard
from publish_fixtures import hub_env

from steps import REPO_ROOT
from steps.engines import embedded_gguf
from steps.finish_run import FAILED_ITEMS_EXIT
from steps.magpie.rows import Provenance, conversation_rows
from steps.magpie.tagging import load_tag_scales

SCRIPT = REPO_ROOT / "pipelines" / "magpie.py"
TINY = ["--instruction-max-tokens", "16", "--response-max-tokens", "12"]
TOKEN = "hf_" + "m4gpieT0ken" * 3


def magpie(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    """The CLI in a subprocess: a hang fails the test instead of blocking the suite."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO_ROOT)


@pytest.mark.parametrize("args", [
    ["--rows", "3", "--engine", "vllm:some/model"],
    ["--rows", "3", "--domain", "astrology"],
    ["--rows", "3", "--turns", "2", "--instructions-only"],
    ["--rows", "0"],
    ["--rows", "3", "--engine", "openai:m@http://127.0.0.1:9/v1"],
])
def test_bad_options_are_one_line(args: list[str], tmp_path: Path) -> None:
    done = magpie(*args, "--output-dir", str(tmp_path))
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]  # (library warnings may come first)
    assert last.startswith("error: ") and "Traceback" not in done.stderr


# make_magpie_rows called by a process that has already run llama.cpp itself (as a test session
# or orca3_mix may have): distilabel's forked workers hang in OpenMP unless the pipeline runs in
# a fresh process. Run in a subprocess so that a regression fails on the timeout.
CALLER = """
import json
from steps.engines import build_llm
from steps.magpie.pipeline import make_magpie_rows
from steps.magpie.sampling import Sampling

if __name__ == "__main__":
    llm = build_llm("embedded", max_new_tokens=4)
    llm.load()
    llm.generate(inputs=["<|im_start|>user\\n"])
    made = make_magpie_rows(5, turns=1, seed=3, batch_size=2,
                            instruction=Sampling(temperature=1.0, top_p=1.0, max_new_tokens=16),
                            response=Sampling(temperature=0.0, top_p=1.0, max_new_tokens=12))
    print(json.dumps({"rows": made.rows.to_pylist(),
                      "lost": sum(made.funnel.column("rows").to_pylist())}))
"""


@pytest.mark.model
def test_single_turn_rows_for_the_mix() -> None:
    done = subprocess.run([sys.executable, "-c", CALLER], capture_output=True, text=True,
                          timeout=900, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    made = json.loads(done.stdout.strip().splitlines()[-1])
    rows = made["rows"]
    assert len(rows) + made["lost"] == 5
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)
    assert {(r["flow"], r["config"]) for r in rows} == {("magpie", "magpie")}
    assert len({r["messages"][0]["content"] for r in rows}) > 1  # seeded per row
    assert json.loads(rows[0]["generation_params"])["template_family"] == "chatml"


@pytest.mark.model
def test_cli_multi_turn_tagged(tmp_path: Path) -> None:
    done = magpie("--rows", "7", "--batch-size", "3", "--turns", "2", *TINY, "--tag",
                  "--detect-language", "--languages", "en,es,de,fr", "--domain", "default",
                  "--domain", "math", "--output-dir", str(tmp_path), timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["generation_params"]["turns"] == 2 and run["filter"] is None
    lost = sum(r["rows"] for r in pq.read_table(tmp_path / "funnel.parquet").to_pylist())
    rows = pq.read_table(tmp_path / "data" / "magpie" / "train-00000-of-00001.parquet")
    assert rows.num_rows + lost == 7 == run["rows"]["magpie"] + lost  # a row or a counted loss
    failures = tmp_path / "data" / "failures" / "train-00000-of-00001.parquet"  # (none: no file)
    untagged = {f["item_id"] for f in (pq.read_table(failures).to_pylist() if failures.exists()
                                       else []) if f["stage"] == "tagging"}
    scales = load_tag_scales()
    for row in rows.to_pylist():
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * 2
        assert row["subcategory"] in ("default", "math")
        assert row["task_category"] in scales.task_categories or row["id"] in untagged
        assert row["language"] in ("en", "es", "de", "fr", None)
        assert row["reward"] is None  # no reward model: nothing invented


def test_cli_filters_and_writes_the_repo_folder(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    """The CLI around a (stubbed) generation: filter funnel, failures, run.json, card, and the
    one-line failure summary with exit status 3 after everything is written."""
    spec = importlib.util.spec_from_file_location("magpie_cli", SCRIPT)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    records = [{"conversation_id": i, "domain": "default", "failures": [], "failed": False,
                "messages": [{"role": "user", "content": f"q{i}"},
                             {"role": "assistant", "content": "a" * i}],
                "input_quality": ["poor", "good"][i % 2], "difficulty": "easy"}
               for i in range(6)]
    records[0] = {**records[0], "failed": True,
                  "failures": [{"stage": "instruction_1", "reason": "empty_instruction"}]}
    monkeypatch.setattr(cli, "run_magpie", lambda config, run_id, checkpoints: conversation_rows(
        records, Provenance(run_id, "m", "t", {"seed": 0})))
    cli.main(["--rows", "6", "--filter", "later", "--keep-longest", "2",
              "--output-dir", str(tmp_path)])  # a content failure is final: exit 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("1 of 6 work items failed (empty_instruction ×1); a rerun would give the same "
                    "result: see the failures config")
    funnel = pq.read_table(tmp_path / "funnel.parquet").to_pylist()
    counts = {r["reason"]: r["rows"] for r in funnel}
    assert counts["instruction_1:empty_instruction"] == 1
    assert counts["rows_in"] == 5 and counts["input_quality<good"] == 2
    assert counts["not_in_longest_2"] == 1 and counts["rows_out"] == 2
    kept = pq.read_table(tmp_path / "data" / "magpie" / "train-00000-of-00001.parquet")
    assert [r["messages"][0]["content"] for r in kept.to_pylist()] == ["q3", "q5"]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["filter"]["preset"] == "later" and run["rows"] == {"magpie": 2}
    assert any("no reward model" in line for line in run["filter"]["not_applied"])
    assert run["engines"]["instruction"]["model_id"].startswith("HuggingFaceTB/SmolLM2-135M")
    assert set(run["engines"]) == {"instruction", "response"}
    card = DatasetCard.load(tmp_path / "README.md")  # what was made is carded despite the failure
    assert any(c["config_name"] == "default" for c in card.data.configs)
    assert "| instruction | HuggingFaceTB/SmolLM2-135M-Instruct" in card.text


@pytest.mark.model
def test_tiny_run_is_carded_loadable_pushed_and_leaks_nothing(tmp_path: Path) -> None:
    """A real (tiny) run through the CLI with an absolute GGUF path, an absolute output folder
    and secrets in the environment: the card parses, `datasets` loads the folder, the push
    lands in the Hub double, and no local path, host name or secret is in any pushed file."""
    gguf = embedded_gguf()
    out = tmp_path / "run-folder"
    openai_key = "sk-" + "pl4nted" * 4
    with HubDouble(TOKEN) as hub:
        env = hub_env(hub.url, tmp_path / "hf-home", TOKEN) | {"OPENAI_API_KEY": openai_key}
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--rows", "2", "--batch-size", "2", *TINY,
             "--engine", f"llamacpp:{gguf}", "--output-dir", str(out),
             "--push-to-hub", "someone/magpie-tiny"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
        assert done.returncode in (0, FAILED_ITEMS_EXIT), done.stderr[-3000:]
        pushed = hub.repos["someone/magpie-tiny"].files
    card = DatasetCard.load(out / "README.md")
    assert {c["config_name"] for c in card.data.configs} >= {"default", "magpie"}
    mix = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    rows = pq.read_metadata(out / "data" / "magpie" / "train-00000-of-00001.parquet").num_rows
    assert mix.num_rows == rows and set(mix["flow"]) <= {"magpie"}
    assert {"README.md", "run.json", "data/magpie/train-00000-of-00001.parquet"} <= set(pushed)
    run = json.loads((out / "run.json").read_text())
    assert run["engines"]["instruction"]["spec"] == f"llamacpp:{gguf.name}"
    assert run["config"]["output_dir"] == out.name
    planted = [str(tmp_path), str(gguf.parent), TOKEN, openai_key]
    host = socket.gethostname()
    for name, data in pushed.items():
        for needle in planted + ([host] if len(host) >= 6 and name.endswith((".json", ".md"))
                                 else []):
            assert needle.encode() not in data, (name, needle)
        if name.endswith(".parquet"):
            assert not contains_any_bytes(data, planted), name


def contains_any_bytes(data: bytes, needles: list[str]) -> bool:
    """Whether a Parquet file's decoded strings hold any of `needles` (its pages may compress)."""
    table = pq.read_table(pa.BufferReader(data))
    text = json.dumps(table.to_pylist(), default=str)
    return any(n in text for n in needles)
