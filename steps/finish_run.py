"""How every recipe starts and ends (alignment-handbook's scripts: save -> card -> push).

    check_run(config, engines=…, benchmarks=…)   every option checked before any work starts
    begin_run(repo_dir)                          the earlier run's run.json and card removed
    … the recipe writes data/<config>/ …
    finish_run(config, record, curation=…)       curate -> run.json -> card -> push -> exit status

A run that fails between `begin_run` and the end leaves data without a card, never a card that
describes other data. A run whose items failed still writes and cards what succeeded, then ends
with one line (`12 of 340 work items failed (…); rerun the same command to retry them`) and, when
a rerun may fix them (engine errors), exit status 3 (`FAILED_ITEMS_EXIT`); bad input is exit
status 2 (steps.errors).
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from steps import repo_folder, storage
from steps.errors import UserError
from steps.publish.scrub import portable_path
from steps.recipe_config import RecipeConfig
from steps.run_record import WORK_DIR, RunRecord, write_run_record

FAILED_ITEMS_EXIT = 3
REASONS_SHOWN = 4


def check_run(config: RecipeConfig, *, engines: dict[str, str | None] | None = None,
              benchmarks: list[str] | None = None) -> None:
    """Check every option that work would otherwise trip over later, before any work starts.

    Args:
        config: The recipe config (its push target is checked, and a token must be present).
        engines: Option name -> engine spec (None: not used), e.g. {"--teacher": "embedded"}.
        benchmarks: Decontamination benchmark specs (`[NAME=]SOURCE`).

    Raises:
        UserError: the first bad option, named.
    """
    check_output_folder(config.repo_dir)
    if config.push_to_hub:
        check_push_target(config.push_to_hub)
    for option, spec in (engines or {}).items():
        if spec is not None:
            _check_engine(spec, option)
    if benchmarks:
        _check_benchmarks(benchmarks)


def check_output_folder(repo_dir: Path) -> None:
    """The output folder is new, empty, or a repository folder genteach wrote before.

    A run writes README.md (the card) and data/ there and pushes the whole folder, so a folder
    holding other files would lose its README and publish them.

    Raises:
        UserError: the folder holds files genteach did not write, or the path is a file.
    """
    if repo_dir.exists() and not repo_dir.is_dir():
        raise UserError(f"--output-dir {portable_path(repo_dir)} is a file, not a folder; choose "
                        "a new or empty folder (nothing was done)")
    if not repo_dir.is_dir() or not any(repo_dir.iterdir()):
        return
    ours = (repo_folder.RUN_FILE, repo_folder.DATA_DIR, WORK_DIR)
    if not any((repo_dir / name).exists() for name in ours):
        raise UserError(f"output folder {portable_path(repo_dir)}: holds files genteach did not "
                        "write (its README.md would be replaced and every file pushed); choose "
                        "an empty folder or an earlier run's folder (nothing was done)")


def check_push_target(repo_id: str) -> None:
    """A Hub repo id (NAMESPACE/NAME) and a token to push with, before any work.

    Raises:
        UserError: a malformed repo id, or no token in HF_TOKEN or the login cache.
    """
    from huggingface_hub import get_token

    from steps.publish import check_repo_id

    check_repo_id(repo_id)
    if not get_token():
        raise UserError(f"--push-to-hub {repo_id}: no Hugging Face token; run `hf auth login` or "
                        "set HF_TOKEN, then rerun (nothing was done)")


def _check_engine(spec: str, option: str) -> None:
    # The one call site of the engine preflight. MERGE: steps.engines.check_engine (engines
    # branch: also probes servers and GGUF headers) replaces the parse-only fallback below.
    from steps import engines

    check = getattr(engines, "check_engine", None)
    if check is not None:
        check(spec, option)
        return
    try:
        engines.EngineSpec.parse(spec)
    except UserError as error:
        raise UserError(f"{option}: {error}") from None


def _check_benchmarks(specs: list[str]) -> None:
    # The one call site of the benchmark preflight. MERGE: steps.curation.benchmark_sets.
    # check_benchmarks (curation branch) replaces the existence-only fallback below.
    from steps.curation import benchmark_sets

    check = getattr(benchmark_sets, "check_benchmarks", None)
    if check is not None:
        check(specs)
        return
    for spec in specs:
        source = spec.rpartition("=")[2] if "=" in spec else spec
        if not Path(source).exists() and (Path(source).suffix in benchmark_sets.FILE_SUFFIXES
                                          or source.startswith((".", "/", "~"))):
            raise UserError(f"--benchmarks {spec}: {source} not found")


def begin_run(repo_dir: Path) -> None:
    """Remove the earlier run's run.json and card from `repo_dir` before this run writes data.

    A run that fails midway then never leaves a card describing other data.
    """
    for name in (repo_folder.RUN_FILE, "README.md"):
        (repo_dir / name).unlink(missing_ok=True)
    shutil.rmtree(repo_dir / "plots", ignore_errors=True)


def finish_run(config: RecipeConfig, record: RunRecord, *, curation: object | None = None,
               work_items: int | None = None, license: str | None = None,
               unfinished: str | None = None) -> RunRecord:
    """End a run: curate (if `curation`), write run.json, render the card, push (if asked).

    Args:
        config: The recipe config (output folder, push target, private).
        record: What the recipe recorded; `rows` may be the generated counts: the rows the
            folder holds after curation replace them (the generated ones go to `generated`).
        curation: A `steps.curation.CurationConfig` to curate the folder in place with, or None.
        work_items: How many work items the run had (for the failure line; default: rows).
        license: The card's license (default: the config's, else `other`).
        unfinished: One line saying which work items were not done and why (a token or cost
            cap, an interrupted run), or None. Printed last, also after the failure line.

    Returns:
        The run record as written.

    Raises:
        UserError: the push failed (the folder stays complete and carded).
        SystemExit: status 3 after everything is written, when work items failed in a way a
            rerun may fix (engine errors), were left `unfinished` or nothing at all was made;
            content failures are reported but end with status 0.
    """
    try:
        written = _write_and_publish(config, record, curation, work_items, license)
    finally:
        budget, tokens = getattr(config, "budget", None), (record.model_extra or {}).get("tokens")
        if unfinished:
            print(unfinished, file=sys.stderr)
        elif budget is not None and tokens and (passed := budget.passed(tokens)):
            # every work item was already fed when the cap was checked: say so, not silence
            print(f"all work items were done, but the run passed its cap ({passed}): a cap is "
                  "checked between batches and this run's batches were all under way; a smaller "
                  "--batch-size checks it sooner", file=sys.stderr)
    if unfinished:
        raise SystemExit(FAILED_ITEMS_EXIT)
    return written


def _write_and_publish(config: RecipeConfig, record: RunRecord, curation: object | None,
                       work_items: int | None, license: str | None) -> RunRecord:
    from steps.publish import push_folder, write_card

    repo_dir = config.repo_dir
    generated = dict(record.rows)
    if curation is not None and any(generated.values()):  # nothing to curate if all failed
        from steps.curation import curate

        curate(repo_dir, repo_dir, curation)
    rows = {c: pq.read_metadata(repo_folder.config_file(repo_dir, c)).num_rows
            for c in repo_folder.configs(repo_dir) if c != repo_folder.FAILURES}
    record = record.model_copy(update={
        "rows": rows, "generated": generated if curation is not None else record.generated})
    written = write_run_record(repo_dir, record)
    if not repo_folder.configs(repo_dir):  # not a row, not a failure record: nothing to card
        print(f"no rows were made; {repo_folder.RUN_FILE} and {repo_folder.FUNNEL_FILE} in "
              f"{portable_path(repo_dir)} say why", file=sys.stderr)
        raise SystemExit(FAILED_ITEMS_EXIT)
    readme = write_card(repo_dir, repo_id=config.push_to_hub, license=license)
    print(f"wrote {counted(sum(rows.values()), 'row')} in {counted(len(rows), 'config')} and "
          f"{counted(record.failures, 'failure record')} to {repo_dir}; card: {readme}")
    if config.output_url:  # assembled in a local staging folder, published whole (issue 12)
        copied = storage.copy_folder(repo_dir, config.output_url)
        print(f"copied {counted(len(copied), 'file')} to {config.output_url}")
    if config.push_to_hub:
        print(f"pushed: {push_folder(repo_dir, config.push_to_hub, private=config.private)}")
    failed = failure_line(repo_dir, record.run_id, work_items)
    if failed:
        line, retryable = failed
        print(line, file=sys.stderr)
        if retryable:
            raise SystemExit(FAILED_ITEMS_EXIT)
    return written


def failure_line(repo_dir: Path, run_id: str, work_items: int | None = None) -> tuple[str, bool] | None:
    """The one-line summary of this run's failure records, or None when it has none.

    Returns the line and whether a rerun may fix some of the items (`steps.llm_step.rerun_may_fix`:
    the engine was unavailable or overloaded). Those items were not marked done, so the same
    command retries exactly them; content failures (unparseable replies, broken structure, a
    prompt over the context) are final outcomes, counted on the card. An item with several
    failure records counts once.
    """
    from steps.llm_step import rerun_may_fix

    if repo_folder.FAILURES not in repo_folder.configs(repo_dir):
        return None
    failures = [f for f in repo_folder.read_config(repo_dir, repo_folder.FAILURES)
                .select(["run_id", "item_id", "reason"]).to_pylist() if f["run_id"] == run_id]
    if not failures:
        return None
    items = len({f["item_id"] for f in failures})
    reasons = Counter(f["reason"] or "unknown" for f in failures).most_common()
    shown = ", ".join(f"{reason} ×{n}" for reason, n in reasons[:REASONS_SHOWN])
    more = (f", {counted(len(reasons) - REASONS_SHOWN, 'more reason')}"
            if len(reasons) > REASONS_SHOWN else "")
    # "3 of 40 work items", "1 work item": the count of a partitive agrees with its total.
    items_of = f"{items} of {work_items} work items" if work_items else counted(items, "work item")
    retryable = any(rerun_may_fix(f) for f in failures)
    advice = ("rerun the same command to retry them" if retryable
              else "a rerun would give the same result: see the failures config")
    return f"{items_of} failed ({shown}{more}); {advice}", retryable


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, plural unless the count is 1: "1 config", "0 rows", "2 failure records".

    For the run's summary lines; every noun they count takes a plain -s plural.
    """
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
