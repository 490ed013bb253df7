"""`pipelines/review.py`: Argilla review queues, against a real argilla-server 2.8 on loopback.

The server (tests/argilla_server_fixture.py) runs with a test-only search engine that refuses
every query, so these tests also prove that push, pull and status never need one. Annotators
answer through the Argilla SDK with their own keys, the way the UI posts a response.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from uuid import UUID

import argilla as rg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from argilla._exceptions import ArgillaAPIError
from argilla._models import UserResponseModel
from argilla_server_fixture import ArgillaServer, argilla_server_fixture  # noqa: F401

from steps import REPO_ROOT
from steps.repo_folder import read_config, write_config
from steps.review.decisions import Answer, decide
from steps.review.guidelines import MAX_CHARS, guidelines
from steps.review.records import record_id, unpushable_reason, with_correction
from steps.rows import ROW_SCHEMA, stable_id, to_table
from steps.taxonomy import load_taxonomy

SCRIPT = REPO_ROOT / "pipelines" / "review.py"
SKILLS = {"rc": "reading_comprehension", "code_": "coding", "mcq": "multiple_choice_questions"}
RC_JUDGE = [4.6, 2.2, 3.0]
RC_EMBEDDINGS = [[1.0, 0.0, 0.0, 0.5], [0.0, 1.0, 0.0, 0.5], [0.0, 0.0, 1.0, 0.5]]


def make_row(config: str, n: int, answer: str | None = None) -> dict:
    return {
        "id": stable_id("test", config, n),
        "messages": [{"role": "user", "content": f"{config} question {n}?"},
                     {"role": "assistant", "content": answer or f"{config} answer {n}."}],
        "flow": "agentinstruct", "skill": SKILLS[config], "config": config,
        "subcategory": f"type_{n % 2}", "transformation_agent": "identity", "run_id": "test-run",
    }


def make_repo(folder: Path) -> Path:
    """rc (3 rows, with judge scores and embeddings), code_ (2 rows) and mcq (2 rows)."""
    for config, count in {"rc": 3, "code_": 2, "mcq": 2}.items():
        table = to_table([make_row(config, n) for n in range(count)])
        if config == "rc":
            table = (table.append_column("judge_score", pa.array(RC_JUDGE))
                     .append_column("judge_model", pa.array(["judge-llm"] * 3))
                     .append_column("embedding", pa.array(RC_EMBEDDINGS, pa.list_(pa.float32()))))
        write_config(folder, config, table)
    return folder


def review(*args: str | Path, key: str | None = None, **env_vars: str) -> subprocess.CompletedProcess:
    """Run the CLI; the key goes in through ARGILLA_API_KEY, as the docs recommend."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARGILLA_")} | env_vars
    if key:
        env["ARGILLA_API_KEY"] = key
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def _load_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("review_cli", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REVIEW_CLI = _load_cli()


def cli(*args: str | Path) -> Outcome:
    """The script's main() in this process: the same code without a new interpreter's start-up
    (the subprocess runs above check the real exit status and stderr)."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            REVIEW_CLI.main([str(arg) for arg in args])
        except SystemExit as exit_:
            code = exit_.code
    return Outcome(code, out.getvalue(), err.getvalue())


def ok(done: subprocess.CompletedProcess | Outcome) -> str:
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def error_lines(done: subprocess.CompletedProcess | Outcome) -> list[str]:
    assert done.returncode == 2, (done.stdout, done.stderr)
    return [line for line in done.stderr.splitlines() if line.strip()]


def server_ids(dataset: rg.Dataset) -> dict[str, UUID]:
    """Record id (ours) -> the server's record UUID, from the database listing."""
    return {record.id: record._server_id for record in dataset.records()}


def answer(client: rg.Argilla, record: UUID, status: str = "submitted", **values: object) -> None:
    """Post one annotator's response to a record, the call the Argilla UI makes on Submit."""
    client.api.records.create_record_response(record, UserResponseModel(
        values={question: {"value": value} for question, value in values.items()},
        status=status, user_id=client.me.id))


# --- decisions, guidelines and record ids (no server) -------------------------------------------

def test_majority_decides_and_a_tie_discards() -> None:
    keep = Answer("submitted", {"quality": 4, "keep": "keep"})
    drop = Answer("submitted", {"quality": 2, "keep": "discard"})
    assert decide([keep, keep, drop]).state == "kept"
    assert decide([keep, keep, drop]).agreement == pytest.approx(2 / 3)
    tie = decide([keep, drop])
    assert (tie.state, tie.agreement, tie.quality) == ("discarded", 0.5, 3)
    assert decide([keep]).agreement is None  # one reviewer: nothing to agree with


def test_discard_button_counts_and_drafts_do_not() -> None:
    assert decide([Answer("discarded", {})]).state == "discarded"
    assert decide([Answer("draft", {"quality": 5, "keep": "keep"})]).state == "pending"
    two_needed = decide([Answer("submitted", {"quality": 5, "keep": "keep"})], min_submitted=2)
    assert (two_needed.state, two_needed.reviewers) == ("pending", 1)


def test_correction_comes_from_keep_voters_only() -> None:
    fix = {"quality": 3, "keep": "keep", "corrected_response": "  better  "}
    assert decide([Answer("submitted", fix)]).correction == "better"
    other = {"quality": 3, "keep": "keep", "corrected_response": "other"}
    most = decide([Answer("submitted", other), Answer("submitted", fix), Answer("submitted", fix)])
    assert most.correction == "better"
    dropped = {"quality": 1, "keep": "discard", "corrected_response": "ignored"}
    assert decide([Answer("submitted", dropped)]).correction is None


def test_guidelines_come_from_the_taxonomy() -> None:
    taxonomy = load_taxonomy()
    for skill in taxonomy.skills.values():
        text = guidelines(skill.split, skill)
        assert skill.description in text and len(text) <= MAX_CHARS
        assert skill.instruction_agents[0].name in text
    unknown = guidelines("magpie", None)
    assert "not in the taxonomy" in unknown and "Quality" in unknown


def test_record_id_follows_provenance_and_content() -> None:
    row = make_row("rc", 0)
    assert record_id(row) == record_id(dict(row))
    assert record_id(row) != record_id(make_row("rc", 0, answer="a regenerated answer"))
    assert record_id(row) != record_id(make_row("rc", 1))


def test_rows_the_server_would_refuse_are_named() -> None:
    assert unpushable_reason(make_row("rc", 0)) is None
    assert unpushable_reason(make_row("rc", 0) | {"messages": []}) == "no_messages"
    empty = make_row("rc", 0) | {"messages": [{"role": "user", "content": ""}]}
    assert unpushable_reason(empty) == "empty_message"
    long = make_row("rc", 0) | {"messages": [{"role": "user", "content": "x" * 20_001}]}
    assert unpushable_reason(long) == "message_over_20000_chars"


def test_correction_replaces_the_last_assistant_reply() -> None:
    messages = make_row("rc", 0)["messages"] + [{"role": "user", "content": "and then?"}]
    fixed = with_correction(messages, "new")
    assert [m["content"] for m in fixed] == ["rc question 0?", "new", "and then?"]
    assert messages[1]["content"] == "rc answer 0."  # the input is not modified


def test_no_url_and_unreachable_sources_are_one_line(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "offline")
    assert error_lines(review("push", folder, key="k" * 16)) == [
        "error: no Argilla server given; pass --api-url / ARGILLA_API_URL "
        "(e.g. http://localhost:6900)"]
    lines = error_lines(review("status", folder, "--api-url", "http://127.0.0.1:1", key="k" * 16))
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot reach Argilla at http://127.0.0.1:1 "
                               "(--api-url / ARGILLA_API_URL): ")
    assert "refused" in lines[0].lower()
    hub = review("status", "some-org/some-data", "--download-dir", tmp_path, key="k" * 16,
                 HF_ENDPOINT="http://127.0.0.1:1")
    assert [line.split(" (")[0] for line in error_lines(hub)] == [
        "error: some-org/some-data: cannot download the dataset repo from the Hub"]


# --- against the real server ---------------------------------------------------------------------

def test_wrong_key_and_annotator_key_are_one_line(argilla_server: ArgillaServer,
                                                   tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "keys")
    wrong = "not-the-key-" + "x" * 20
    done = review("push", folder, "--api-url", argilla_server.url, "--api-key", wrong)
    assert error_lines(done) == [f"error: Argilla at {argilla_server.url} rejected the API key "
                                 "(--api-key / ARGILLA_API_KEY)"]
    assert wrong not in done.stdout + done.stderr
    argilla_server.annotator("reader")
    done = cli("push", folder, "--api-url", argilla_server.url,
               "--api-key", argilla_server._annotators["reader"])
    lines = error_lines(done)
    assert len(lines) == 1 and "may not do this; use the key of an owner or admin" in lines[0]


def test_push_builds_one_queue_per_skill_and_only_once(argilla_server: ArgillaServer,
                                                       tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "build")
    server = ("--api-url", argilla_server.url, "--api-key", argilla_server.api_key)
    out = ok(cli("push", folder, *server))
    assert "rc → argilla/build-rc: 3 rows, 0 already there, 3 sent" in out
    owner = argilla_server.owner()
    rc = owner.datasets("build-rc", workspace=argilla_server.workspace)
    taxonomy = load_taxonomy()
    assert taxonomy.skills["reading_comprehension"].description in rc.settings.guidelines
    assert [q.name for q in rc.settings.questions] == ["quality", "keep", "corrected_response"]
    assert {m.name for m in rc.settings.metadata} == {
        "skill", "subcategory", "flow", "agent", "turns", "prompt_chars", "response_chars",
        "judge_score"}
    assert [(v.name, v.dimensions) for v in rc.settings.vectors] == [("embedding", 4)]
    rows = read_config(folder, "rc").to_pylist()
    records = {r.id: r for r in rc.records(with_suggestions=True, with_vectors=True)}
    assert set(records) == {record_id(row) for row in rows}
    for row, judge, vector in zip(rows, RC_JUDGE, RC_EMBEDDINGS, strict=True):
        record = records[record_id(row)]
        assert record.fields["messages"][-1].content == row["messages"][-1]["content"]
        assert record.suggestions["quality"].value == int(judge + 0.5)
        assert record.suggestions["quality"].agent == "judge-llm"
        assert record.vectors["embedding"] == pytest.approx(vector)
        assert record.metadata["skill"] == "reading_comprehension"
        assert record.metadata["response_chars"] == len(row["messages"][-1]["content"])
    code = owner.datasets("build-code_", workspace=argilla_server.workspace)
    assert "judge_score" not in {m.name for m in code.settings.metadata}
    assert not list(code.settings.vectors)

    out = ok(cli("push", folder, *server))
    assert out.count("0 sent") == 3 and len(list(rc.records())) == 3

    mcq = read_config(folder, "mcq").to_pylist()
    empty_reply = make_row("mcq", 9) | {"messages": [{"role": "user", "content": "q"},
                                                     {"role": "assistant", "content": ""}]}
    write_config(folder, "mcq", to_table([*mcq, make_row("mcq", 2), mcq[0], empty_reply]))
    out = ok(cli("push", folder, *server, "--configs", "mcq"))
    assert ("mcq → argilla/build-mcq: 5 rows, 2 already there, 1 sent, 1 duplicates, "
            "refused: 1 empty_message") in out
    assert len(list(owner.datasets("build-mcq", workspace=argilla_server.workspace).records())) == 3


def test_review_round_trip(argilla_server: ArgillaServer, tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "loop")
    key = argilla_server.api_key
    server = ("--api-url", argilla_server.url, "--api-key", key)
    ok(cli("push", folder, *server))
    owner = argilla_server.owner()
    rows = {config: read_config(folder, config).to_pylist() for config in SKILLS}
    ids = {config: server_ids(owner.datasets(f"loop-{config}", workspace=argilla_server.workspace))
           for config in SKILLS}

    def record(config: str, n: int) -> UUID:
        return ids[config][record_id(rows[config][n])]

    first, second = argilla_server.annotator("ann1"), argilla_server.annotator("ann2")
    answer(first, record("rc", 0), quality=4, keep="keep")
    answer(first, record("rc", 1), quality=1, keep="discard")
    answer(first, record("rc", 2), status="draft", quality=3)  # not finished: stays pending
    answer(first, record("code_", 0), quality=3, keep="keep", corrected_response="fixed code")
    answer(first, record("mcq", 0), quality=5, keep="keep")
    answer(second, record("mcq", 0), quality=4, keep="keep")

    out = ok(cli("status", folder, *server))
    assert "total: 7 rows · 4 reviewed (3 kept, 1 discarded, 1 corrected) · 3 pending" in out
    assert not (folder / "data" / "reviewed").exists()

    pulled = cli("pull", folder, *server)
    ok(pulled)
    reviewed = read_config(folder, "reviewed")
    assert reviewed.schema.remove_metadata().equals(ROW_SCHEMA)
    by_id = {row["id"]: row for row in reviewed.to_pylist()}
    assert set(by_id) == {rows["rc"][0]["id"], rows["code_"][0]["id"], rows["mcq"][0]["id"]}
    assert by_id[rows["code_"][0]["id"]]["messages"][-1]["content"] == "fixed code"
    assert by_id[rows["code_"][0]["id"]]["messages"][0] == rows["code_"][0]["messages"][0]
    assert by_id[rows["rc"][0]["id"]]["messages"] == rows["rc"][0]["messages"]

    counts = json.loads((folder / "review.json").read_text())
    assert {k: counts[k] for k in ("rows", "reviewed", "kept", "discarded", "corrected",
                                   "pending", "not_in_argilla", "orphaned_records")} == {
        "rows": 7, "reviewed": 4, "kept": 3, "discarded": 1, "corrected": 1, "pending": 3,
        "not_in_argilla": 0, "orphaned_records": 0}
    assert (counts["agreement"], counts["multi_reviewed"]) == (1.0, 1)
    assert counts["configs"]["rc"]["discarded"] == 1 and counts["configs"]["code_"]["corrected"] == 1
    per_row = {(r["config"], r["row_id"]): r for r in pq.read_table(folder / "review.parquet")
               .to_pylist()}
    mcq0 = per_row[("mcq", rows["mcq"][0]["id"])]
    assert (mcq0["reviewers"], mcq0["quality"], mcq0["agreement"]) == (2, 4.5, 1.0)
    assert per_row[("rc", rows["rc"][2]["id"])]["state"] == "pending"

    for path in folder.rglob("*"):
        assert not path.is_file() or key.encode() not in path.read_bytes(), path
    assert key not in pulled.stdout + pulled.stderr

    out = ok(cli("push", folder, *server))
    assert out.count("0 sent") == 3  # `reviewed` is not pushed, and nothing is sent twice
    ok(cli("pull", folder, *server))
    assert json.loads((folder / "review.json").read_text()) == counts


def test_search_backed_endpoints_fail_loudly_here(argilla_server: ArgillaServer,
                                                  tmp_path: Path) -> None:
    """What the test-only engine leaves uncovered (search, progress) errors instead of faking."""
    folder = make_repo(tmp_path / "search")
    ok(cli("push", folder, "--api-url", argilla_server.url, "--api-key", argilla_server.api_key,
           "--configs", "rc"))
    dataset = argilla_server.owner().datasets("search-rc", workspace=argilla_server.workspace)
    with pytest.raises(ArgillaAPIError) as searched:
        list(dataset.records(query="question"))
    with pytest.raises(ArgillaAPIError) as progress:
        dataset.progress()
    for refused in (searched.value, progress.value):
        assert refused.status_code == 501 and "needs a real search engine" in str(refused)
