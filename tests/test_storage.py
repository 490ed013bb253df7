"""Run storage at fsspec URLs: checkpoints and configs on a real S3-protocol server on loopback
(tests/s3_server.py, standing in for S3/MinIO/R2), and the same calls on local paths."""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pytest
import s3fs
from s3_server import S3Server, s3_server_fixture, s3_session_fixture  # noqa: F401

from steps import REPO_ROOT, storage

ROWS = pa.table({"id": ["a", "b"], "messages": [json.dumps([{"role": "user", "content": "hi"}])] * 2})


def _commit_batch(work: str, batch: str, items: list[str]) -> None:
    """A checkpoint batch the way the checkpoint writer commits one: data first, marker last."""
    storage.write_parquet(storage.join(work, f"{batch}.rows.parquet"), ROWS)
    storage.write_bytes_atomic(storage.join(work, f"{batch}.done.json"),
                               json.dumps({"items": items}).encode())


def test_checkpoint_batch_on_s3(s3_server: S3Server) -> None:
    work = s3_server.url("run", ".work")
    _commit_batch(work, "b1", ["i1", "i2"])
    markers = storage.glob(storage.join(work, "*.done.json"))
    assert markers == [f"{work}/b1.done.json"]
    assert json.loads(storage.read_bytes(markers[0])) == {"items": ["i1", "i2"]}
    assert storage.read_parquet(f"{work}/b1.rows.parquet").equals(ROWS)
    assert storage.exists(f"{work}/b1.rows.parquet") and not storage.exists(f"{work}/b2.rows.parquet")


def test_listing_sees_what_another_node_wrote(s3_server: S3Server) -> None:
    """The progress count polls the markers: a marker written by another process (here another
    client, with no shared cache) must show up in the next count."""
    work = s3_server.url("run", ".work")
    _commit_batch(work, "b1", ["i1"])
    assert len(storage.glob(f"{work}/*.done.json")) == 1
    other_node = s3fs.S3FileSystem(skip_instance_cache=True, endpoint_url=s3_server.endpoint_url)
    other_node.pipe_file(f"{work}/b2.done.json".removeprefix("s3://"), b'{"items": ["i2"]}')
    assert len(storage.glob(f"{work}/*.done.json")) == 2
    storage.remove(f"{work}/b2.done.json")
    storage.remove(f"{work}/b2.done.json")  # missing is fine by default
    assert len(storage.glob(f"{work}/*.done.json")) == 1
    with pytest.raises(FileNotFoundError):
        storage.remove(f"{work}/b2.done.json", missing_ok=False)


def test_load_dataset_reads_a_config_back_from_s3(s3_server: S3Server, tmp_path: Path) -> None:
    config = s3_server.url("repo", "data", "default", "train-00000-of-00001.parquet")
    storage.write_parquet(config, ROWS)
    options = storage.storage_options(config)
    assert options == {"endpoint_url": s3_server.endpoint_url}
    files = s3_server.url("repo", "data", "default", "*.parquet")
    loaded = datasets.load_dataset("parquet", data_files=files, storage_options=options, split="train",
                                   cache_dir=str(tmp_path))
    assert loaded.to_list() == ROWS.to_pylist()


def test_copy_folder_between_local_and_s3(s3_server: S3Server, tmp_path: Path) -> None:
    local = tmp_path / "repo"
    storage.write_parquet(local / "data" / "x" / "train.parquet", ROWS)
    storage.write_bytes_atomic(local / "run.json", b"{}")
    remote = s3_server.url("repo")
    assert storage.copy_folder(local, remote) == ["data/x/train.parquet", "run.json"]
    assert storage.copy_folder(remote, tmp_path / "back") == ["data/x/train.parquet", "run.json"]
    assert (tmp_path / "back" / "run.json").read_bytes() == b"{}"
    with pytest.raises(FileNotFoundError):
        storage.copy_folder(s3_server.url("nothing"), tmp_path / "none")


def test_local_paths_work_the_same(tmp_path: Path) -> None:
    work = str(tmp_path / "run" / ".work")
    _commit_batch(work, "b1", ["i1"])
    assert storage.glob(storage.join(work, "*.done.json")) == [f"{work}/b1.done.json"]
    assert storage.read_parquet(f"{work}/b1.rows.parquet").equals(ROWS)
    with storage.open_url(tmp_path / "new" / "folder" / "note.txt", "w") as out:
        out.write("x")
    assert (tmp_path / "new" / "folder" / "note.txt").read_text() == "x"
    assert storage.storage_options(work) == {}


def test_local_atomic_write_keeps_the_old_content_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "marker.json"
    storage.write_bytes_atomic(target, b"old")
    with pytest.raises(TypeError):
        storage.write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["marker.json"]  # no temporary left behind


def test_endpoint_and_join(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://generic:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3-only:2")
    assert storage.storage_options("s3://b/k") == {"endpoint_url": "http://s3-only:2"}
    assert storage.storage_options("hf://datasets/u/d") == {}
    assert storage.join("s3://b/run/", "x", "y.json") == "s3://b/run/x/y.json"
    assert storage.join("/tmp/run", "x") == "/tmp/run/x"
    assert storage.is_local("relative/dir") and not storage.is_local("hf://datasets/u/d")


def test_orca3_mix_writes_checkpoints_and_output_to_s3(s3_server: S3Server, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose plan, checkpoints and repository folder live on `s3://` (the loopback S3
    server stands in for AWS S3, MinIO or R2), read back with `datasets.load_dataset`."""
    url = s3_server.url("orca")
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "pipelines" / "orca3_mix.py"), "--skills",
         "text_classification", "--rows", "2", "--tasks-per-item", "1", "--refinement-rounds", "0",
         "--agent-max-tokens", "120", "--teacher-max-tokens", "24", "--batch-size", "1",
         "--output-dir", url],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env={**os.environ, **s3_server.env})
    assert done.returncode == 0, done.stderr[-3000:]
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    assert storage.glob(f"{url}/.work/*/batches/*.done.json")  # the commit points, on S3
    assert storage.exists(f"{url}/README.md") and storage.exists(f"{url}/run.json")
    data = datasets.load_dataset("parquet", data_files=f"{url}/data/text_classification/*.parquet",
                                 storage_options=storage.storage_options(url), split="train")
    assert data.num_rows > 0 and data[0]["messages"][-1]["role"] == "assistant"
