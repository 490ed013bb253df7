"""The ReST-EM demonstration resumes: kept chunks and fine-tunes, refused foreign folders.

No model runs here: the E-step is replaced by a deterministic stand-in, which is what the resume
logic sees of `run_estep` (results in input order, seeded per problem).
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from steps import REPO_ROOT
from steps.engines import MOST_SEQUENCES, LocalDecoding, build_llm
from steps.errors import UserError
from steps.rest_em.estep import EStepResult, ProblemResult
from steps.rest_em.mstep import SpawnedChildTraceback, in_spawned_child
from steps.rest_em.mstep_types import MStepResult
from steps.rest_em.problems import Problem
from steps.rest_em.run_store import (
    EStepStore,
    claim_output_dir,
    load_mstep,
    result_from_json,
    result_to_json,
    rowless,
    save_mstep,
)
from steps.rest_em.scoring import Scored


def _gain_module():
    path = REPO_ROOT / "benchmarks" / "rest_em_gain.py"
    spec = importlib.util.spec_from_file_location("rest_em_gain", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(problem: Problem, k: int = 3) -> ProblemResult:
    """What a seeded E-step gives `problem`: depends on the problem only, never on its chunk."""
    return ProblemResult(
        problem=problem, solutions=[f"{problem.id} sample {i}" for i in range(k - 1)] + [None],
        scored=[Scored("pass", "4"), Scored("fail", "5", "wrong answer"),
                Scored("no_output", detail="context_overflow")][:k],
        kept=[0], greedy=Scored("unparseable"), output_tokens=len(problem.id))


def _problems(count: int) -> list[Problem]:
    return [Problem(f"p{i}", f"What is {i} + 1?", "math", answer=str(i + 1)) for i in range(count)]


def test_chunk_store_round_trip(tmp_path: Path) -> None:
    results = [_result(p) for p in _problems(3)]
    results[1].problem = Problem("t", "tests", "code", tests=[{"input": "1", "output": "2"}])
    store = EStepStore(tmp_path / "estep-0")
    assert store.load(1) is None
    store.save(1, results, 12.5)
    assert store.load(1) == (results, 12.5)
    assert [result_from_json(json.loads(json.dumps(result_to_json(r)))) for r in results] == results
    assert not list((tmp_path / "estep-0").glob(".*partial"))  # written whole, then renamed


def test_settings_mismatch_is_refused_naming_the_options(tmp_path: Path) -> None:
    assert claim_output_dir(tmp_path, {"k": "16", "max_per_problem": "4"}) == 0
    (tmp_path / "estep-0").mkdir()
    (tmp_path / "estep-0" / "chunk-001.jsonl").write_text("{}\n")
    assert claim_output_dir(tmp_path, {"k": "16", "max_per_problem": "4"}) == 1  # pieces kept
    with pytest.raises(UserError) as refused:
        claim_output_dir(tmp_path, {"k": "4", "max_per_problem": "4", "seed": "1"})
    assert str(refused.value) == (f"--output-dir {tmp_path} holds a run with other settings (-k 16 "
                                  "there, 4 here; --seed unset there, 1 here); give those options "
                                  "or another folder")
    with pytest.raises(UserError, match="is a file; give a folder"):
        claim_output_dir(tmp_path / "estep-0" / "chunk-001.jsonl", {})


def test_output_folders_of_something_else_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds files of something else"):
        claim_output_dir(tmp_path, {"k": "16"})
    with pytest.raises(UserError, match="cannot write there"):  # a folder under a file
        claim_output_dir(tmp_path / "notes.txt" / "run", {"k": "16"})
    (tmp_path / "run").mkdir()
    for unreadable in ("{broken", "[1, 2]"):
        (tmp_path / "run" / "settings.json").write_text(unreadable)
        with pytest.raises(UserError, match="its settings.json is unreadable"):
            claim_output_dir(tmp_path / "run", {"k": "16"})
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_benchmark_refuses_another_runs_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gain = _gain_module()
    claim_output_dir(tmp_path, gain.run_settings(gain.parse_args(["--output-dir", str(tmp_path)])))
    with pytest.raises(SystemExit) as exited:
        gain.main(["--small", "--output-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert "holds a run with other settings (--epochs 3 there, 1 here;" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]  # no work started


@pytest.mark.parametrize(("argv", "names"), [
    (["-k", "0"], "argument -k: '0': give a whole number of at least 1"),
    (["--replicas", "two"], "argument --replicas: 'two': give a whole number"),
    (["--steps", "4-2"], "argument --steps: '4-2': give MIN-MAX"),
    (["--learning-rates", "1e-5,x"], "argument --learning-rates: '1e-5,x': give positive numbers"),
    (["--learning-rates", "1e-5,inf"], "argument --learning-rates: '1e-5,inf': give positive"),
    (["--engine", "llamacpp:missing.gguf"], "missing.gguf"),
    (["--engine", f"llamacpp:{__file__}"], "not a GGUF file"),
    (["--engine", "vllm:org/model"], "give embedded or llamacpp:PATH.gguf"),
    (["--engine", "embedded:x"], "give embedded or llamacpp:PATH.gguf"),
])
def test_bad_input_is_one_line_before_the_run_folder_is_claimed(
        argv: list[str], names: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        _gain_module().main([*argv, "--output-dir", str(tmp_path / "run")])
    error = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and names in error and "\n" not in error
    assert not (tmp_path / "run").exists()  # a corrected rerun is not refused as another run


def test_small_sets_only_the_options_not_given() -> None:
    gain = _gain_module()
    small = gain.parse_args(["--small", "-k", "8"])
    assert (small.k, small.train, small.epochs) == (8, 8, 1)
    assert gain.parse_args(["-k", "8", "--small"]).k == 8
    spelled_out = [f"--{name.replace('_', '-')}" if len(name) > 1 else f"-{name}"
                   for name in gain.SMALL]
    values = [str(value) for value in gain.SMALL.values()]
    assert gain.run_settings(gain.parse_args(["--small"])) == gain.run_settings(  # the same run
        gain.parse_args([item for pair in zip(spelled_out, values, strict=True) for item in pair]))


def test_the_default_folder_is_in_the_repository_and_shown_without_local_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    gain = _gain_module()
    with pytest.raises(SystemExit) as exited:
        gain.parse_args(["--help"])
    shown = capsys.readouterr().out
    assert exited.value.code == 0 and "outputs/rest_em_gain" in shown and str(REPO_ROOT) not in shown
    monkeypatch.chdir(tmp_path)
    assert gain.parse_args([]).output_dir == REPO_ROOT / "outputs" / "rest_em_gain"
    given = gain.parse_args(["--output-dir", "outputs/rest_em_gain"]).output_dir
    assert given.resolve() == tmp_path / "outputs" / "rest_em_gain"  # where the user is


def test_spawned_child_returns_its_result_and_raises_its_error() -> None:
    assert in_spawned_child(sum, [1, 2]) == 3
    with pytest.raises(ValueError, match="invalid literal") as raised:
        in_spawned_child(int, "x")
    assert isinstance(raised.value.__cause__, SpawnedChildTraceback)
    assert "Traceback" in str(raised.value.__cause__)


def test_ctrl_c_ends_a_spawned_m_step_child_in_one_line() -> None:
    """Ctrl-C reaches the process group: the child, which ignores SIGINT from its start (its
    imports included), prints nothing and is ended; the parent says `interrupted`."""
    child = ("import os, signal, time; "
             "print(os.getpid(), signal.getsignal(signal.SIGINT) == signal.SIG_IGN, flush=True); "
             "time.sleep(60)")
    script = f"from steps.rest_em.mstep import in_spawned_child\nin_spawned_child(exec, {child!r})"
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True,
                           env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    pid, ignored = run.stdout.readline().split()
    assert ignored == "True"
    os.killpg(run.pid, signal.SIGINT)
    _, errors = run.communicate(timeout=60)
    assert run.returncode == -signal.SIGINT and errors.strip() == "interrupted"  # (shells: 130)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)



def test_replicas_is_a_run_option_a_resumed_run_may_change() -> None:
    gain = _gain_module()
    one, three = (gain.parse_args(["--replicas", n, "--output-dir", "x"]) for n in ("1", "3"))
    assert gain.run_settings(one) == gain.run_settings(three)
    assert gain.run_settings(one) != gain.run_settings(gain.parse_args(["-k", "8"]))


def test_rowless_tells_a_stopped_pipeline_from_engine_failures() -> None:
    problem = _problems(1)[0]
    assert not rowless(_result(problem))
    failed = ProblemResult(problem, [None] * 2, [Scored("no_output", detail="context_overflow")] * 2, [],
                           Scored("no_output", detail="context_overflow"), 0)
    assert not rowless(failed)
    assert rowless(ProblemResult(problem, [None] * 2, [Scored("no_output")] * 2, [], Scored("pass"), 0))
    assert rowless(ProblemResult(problem, ["x"] * 2, [Scored("pass")] * 2, [0], Scored("no_output"), 0))


def test_killed_estep_resumes_from_its_last_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gain = _gain_module()
    problems = _problems(10)
    calls: list[list[str]] = []

    def estep(chunk: list[Problem], engine: str, **_: object) -> EStepResult:
        calls.append([p.id for p in chunk])
        if stop_at is not None and len(calls) == stop_at:  # Ctrl-C: the pipeline returns no rows
            return EStepResult([ProblemResult(p, [None] * 3, [Scored("no_output")] * 3, [],
                                              Scored("no_output"), 0) for p in chunk], 1.0)
        return EStepResult([_result(p) for p in chunk], 2.0)

    monkeypatch.setattr(gain, "run_estep", estep)
    args = gain.parse_args(["--chunk", "4", "-k", "3", "--output-dir", str(tmp_path / "run")])
    stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        gain.chunked_estep(problems, "embedded", 0, args)
    assert sorted(p.name for p in (tmp_path / "run" / "estep-0").iterdir()) == ["chunk-001.jsonl"]

    calls.clear()
    stop_at = None
    resumed = gain.chunked_estep(problems, "embedded", 0, args)
    assert calls == [["p4", "p5", "p6", "p7"], ["p8", "p9"]]  # the kept chunk is not redone
    whole = gain.parse_args(["--chunk", "100", "-k", "3", "--output-dir", str(tmp_path / "whole")])
    unchunked = gain.chunked_estep(problems, "embedded", 0, whole)
    assert resumed.results == unchunked.results
    assert resumed.seconds == 6.0  # each chunk's own seconds, the kept one included


def test_kept_fine_tune_is_reused_only_with_its_model(tmp_path: Path) -> None:
    model = tmp_path / "sweep" / "model.gguf"
    model.parent.mkdir()
    model.write_bytes(b"GGUF" + bytes(20))
    result = MStepResult(engine=f"llamacpp:{model}", model_id="m", model_path=model, rows=5,
                         validation_rewards=[0.25, 0.5], best_epoch=1, seconds=12.3, train_loss=[1.5])
    assert load_mstep(model.parent) is None
    save_mstep(model.parent, result)
    assert load_mstep(model.parent) == result
    model.unlink()
    assert load_mstep(model.parent) is None


def test_local_decoding_sizes_llamacpp_only() -> None:
    prompt = [{"role": "user", "content": "x" * 500}]
    assert LocalDecoding.fit(8 * 16, [prompt], 192) == LocalDecoding(MOST_SEQUENCES, 1024)
    assert LocalDecoding.fit(2, None, 192) == LocalDecoding(2)
    assert LocalDecoding.fit(8, ["x" * 20_000], 192).n_ctx == 4096  # never grown past the default
    llm = build_llm("embedded", sequences=2, prompts=[prompt], max_new_tokens=192)
    assert (llm.n_seq_max, llm.n_ctx) == (2, 1024)
    default = build_llm("embedded", max_new_tokens=192)
    assert (default.n_seq_max, default.n_ctx) == (LocalDecoding().n_seq_max, LocalDecoding().n_ctx)
    server = build_llm("openai:m@http://127.0.0.1:9/v1", sequences=64, prompts=[prompt])
    assert not hasattr(server, "n_seq_max")


def test_ctrl_c_before_the_pipeline_takes_it_keeps_the_finished_chunk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gain = _gain_module()
    handler = signal.getsignal(signal.SIGINT)

    def estep(chunk: list[Problem], engine: str, **_: object) -> EStepResult:
        os.kill(os.getpid(), signal.SIGINT)  # pressed while distilabel sets its pipeline up
        return EStepResult([_result(p) for p in chunk], 2.0)

    monkeypatch.setattr(gain, "run_estep", estep)
    args = gain.parse_args(["--chunk", "4", "-k", "3", "--output-dir", str(tmp_path)])
    with pytest.raises(KeyboardInterrupt):
        gain.chunked_estep(_problems(10), "embedded", 0, args)
    assert sorted(p.name for p in (tmp_path / "estep-0").iterdir()) == ["chunk-001.jsonl"]
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C interrupts again after the chunk
