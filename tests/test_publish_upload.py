"""`pipelines/publish.py --push-to-hub`: one commit with every file, nothing partial, no token leaks.

The real Hugging Face Hub cannot be reached from the machines these tests run on, so each test
starts a local HTTP double of the Hub API (tests/hub_double.py) on 127.0.0.1 and runs the real CLI
in a subprocess with `HF_ENDPOINT` pointing at it; huggingface_hub reads `HF_ENDPOINT` at import,
so a subprocess is the honest way to exercise its real code path. `HF_HUB_DISABLE_XET=1` selects
the Git LFS upload protocol, which the double implements (it has no Xet storage).
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hub_double import HubDouble
from publish_fixtures import build_repo, hub_env

from steps import REPO_ROOT
from steps.publish import write_card
from steps.publish.upload import local_files

TOKEN = "hf_" + "t0kenV4lue" * 4
REPO_ID = "someone/synthetic-mix"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    build_repo(folder)
    return folder


@pytest.fixture
def hub():
    with HubDouble(TOKEN) as double:
        yield double


def publish(repo: Path, *args: str, endpoint: str, token: str | None = TOKEN,
            home: Path | None = None) -> subprocess.CompletedProcess:
    env = hub_env(endpoint, home or repo.parent / "hf-home", token)
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "pipelines" / "publish.py"), "--repo-dir", str(repo), *args],
        env=env, capture_output=True, text=True, timeout=300,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The CLI's one-line error (stderr also carries library warnings, so pick the line)."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def folder_digest(repo: Path) -> dict[str, str]:
    return {p: hashlib.sha256((repo / p).read_bytes()).hexdigest() for p in local_files(repo)}


def test_push_uploads_every_file_in_one_commit(repo: Path, hub: HubDouble) -> None:
    result = publish(repo, "--push-to-hub", REPO_ID, "--private", endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    remote = hub.repos[REPO_ID]
    assert remote.private
    assert len(remote.commits) == 1
    committed = [op["path"] for op in remote.commits[0].operations]
    assert sorted(committed) == local_files(repo)
    assert {"README.md", "run.json", "funnel.parquet", "plots/rows_per_config.png"} <= set(committed)
    for name in local_files(repo):
        assert remote.files[name] == (repo / name).read_bytes(), name
    # Binary files went through Git LFS, as on the Hub; text files inline.
    keys = {op["path"]: op["key"] for op in remote.commits[0].operations}
    assert keys["data/rc/train-00000-of-00001.parquet"] == "lfsFile"
    assert keys["plots/token_lengths.png"] == "lfsFile"
    assert keys["README.md"] == "file"
    assert not any(TOKEN.encode() in body for body in hub.bodies)
    assert f"pushed: {hub.url}/datasets/{REPO_ID}/commit/" in result.stdout
    assert f'load_dataset("{REPO_ID}"' in (repo / "README.md").read_text()


def test_repush_commits_only_changes_and_mirrors_the_folder(repo: Path, hub: HubDouble) -> None:
    assert publish(repo, "--push-to-hub", REPO_ID, endpoint=hub.url).returncode == 0
    before = dict(hub.repos[REPO_ID].files)

    unchanged = publish(repo, "--push-to-hub", REPO_ID, endpoint=hub.url)
    assert unchanged.returncode == 0, unchanged.stderr
    assert len(hub.repos[REPO_ID].commits) == 1  # nothing changed: no second commit
    assert hub.repos[REPO_ID].files == before

    shutil.rmtree(repo / "data" / "magpie")  # a config the new run no longer has
    changed = publish(repo, "--push-to-hub", REPO_ID, endpoint=hub.url)
    assert changed.returncode == 0, changed.stderr
    remote = hub.repos[REPO_ID]
    assert len(remote.commits) == 2
    operations = {op["path"]: op["key"] for op in remote.commits[1].operations}
    assert operations["data/magpie/train-00000-of-00001.parquet"] == "deletedFile"
    assert "data/rc/train-00000-of-00001.parquet" not in operations  # unchanged: not re-sent
    assert sorted(set(remote.files) - {".gitattributes"}) == local_files(repo)


def test_failed_commit_leaves_folder_and_remote_intact(repo: Path, hub: HubDouble) -> None:
    write_card(repo, repo_id=REPO_ID)
    digest = folder_digest(repo)
    hub.fail_commits = True
    line = error_line(publish(repo, "--push-to-hub", REPO_ID, endpoint=hub.url))
    assert f"push to {REPO_ID} failed" in line and "intact" in line and "--push-to-hub" in line
    assert folder_digest(repo) == digest
    assert hub.repos[REPO_ID].commits == []
    assert set(hub.repos[REPO_ID].files) == {".gitattributes"}


def test_unreachable_hub_is_one_line(repo: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    line = error_line(publish(repo, "--push-to-hub", REPO_ID, endpoint=closed))
    assert f"push to {REPO_ID} failed" in line
    assert (repo / "README.md").is_file()  # the local repository folder is still complete


def test_no_token_says_how_to_log_in(repo: Path, hub: HubDouble) -> None:
    line = error_line(publish(repo, "--push-to-hub", REPO_ID, endpoint=hub.url, token=None))
    assert "hf auth login" in line and "HF_TOKEN" in line
    assert hub.repos == {}
    assert (repo / "README.md").is_file()  # the card is written even without a token


@pytest.mark.parametrize("bad", ["no-namespace", "a/b/c", "ns/bad name!", "ns/-x-"])
def test_bad_repo_id_is_one_line(repo: Path, hub: HubDouble, bad: str) -> None:
    line = error_line(publish(repo, "--push-to-hub", bad, endpoint=hub.url))
    assert "--push-to-hub" in line and "NAMESPACE/NAME" in line
    assert hub.bodies == []


def test_refuses_a_folder_that_holds_the_token(repo: Path, hub: HubDouble) -> None:
    build_repo(repo, config={"note": f"pasted by mistake {TOKEN[3:]}", "hf": TOKEN})
    line = error_line(publish(repo, "--push-to-hub", REPO_ID, endpoint=hub.url))
    assert "run.json" in line and "token" in line
    assert hub.bodies == []  # checked before anything is sent
