"""Run storage at any fsspec URL: a local path, `s3://bucket/…` (AWS S3, MinIO, R2…), `hf://…`.

On a cluster the steps that write checkpoints run on other nodes than the driver, so the plan,
the checkpoints, the progress count and the output folder must live where every node reaches
them. These helpers are the few operations the runs need, the same for every backend:

    open_url(url, mode)            a file object (local writes create the parent folders)
    read_bytes / write_bytes_atomic    whole objects; a write is seen complete or not at all
    read_parquet / write_parquet   Arrow tables, written atomically the same way
    glob, exists, remove           listings that see what other nodes wrote a moment ago
    copy_folder(src, dst)          a whole folder between any two URLs
    storage_options(url)           what `datasets.load_dataset(..., storage_options=…)` and
                                   polars need to reach the same place

Credentials are never passed around: s3fs and huggingface_hub read theirs from the environment
(`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or `AWS_PROFILE`, `HF_TOKEN`); S3-compatible stores
are reached through `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (botocore's names).
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import tempfile
from pathlib import Path
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

_LOCAL = ("file", "local")
_S3 = ("s3", "s3a")


def protocol(url: str | Path) -> str:
    """`s3` for `s3://b/k`, `file` for a local path (relative or absolute)."""
    return fsspec.utils.get_protocol(str(url))


def is_local(url: str | Path) -> bool:
    """Whether `url` is a local path (or a `file://` URL) rather than a remote store."""
    return protocol(url) in _LOCAL


def storage_options(url: str | Path) -> dict[str, Any]:
    """Filesystem options for `url` taken from the environment.

    No secrets: the filesystems read those themselves. E.g. `{"endpoint_url":
    "http://127.0.0.1:9000"}` for an S3-compatible store (from `AWS_ENDPOINT_URL_S3` or
    `AWS_ENDPOINT_URL`). Pass them to `datasets.load_dataset`, `polars.read_parquet` or
    `fsspec.open`.
    """
    if protocol(url) in _S3:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return {"endpoint_url": endpoint} if endpoint else {}
    return {}


def filesystem(url: str | Path) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of `url` and the path within it (no protocol)."""
    return fsspec.core.url_to_fs(str(url), **storage_options(url))


def join(base: str | Path, *parts: str) -> str:
    """`base/part/…` with `/` for URLs and the OS separator for local paths."""
    if is_local(base):
        return os.path.join(base, *parts)
    return posixpath.join(str(base).rstrip("/"), *parts)


def _full(fs: AbstractFileSystem, path: str, like: str | Path) -> str:
    """A path from `fs` back in the form the caller used: a local path, or a URL."""
    return path if is_local(like) else fs.unstrip_protocol(path)


def open_url(url: str | Path, mode: str = "rb", **kwargs: Any) -> IO[Any]:
    """Open `url` like `open()`; local writes create the parent folders.

    Writing to an object store uploads when the file is closed, as one object (never seen half
    written); locally, use `write_bytes_atomic` for that.
    """
    fs, path = filesystem(url)
    if is_local(url) and any(flag in mode for flag in "wax"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    return fs.open(path, mode, **kwargs)


def read_bytes(url: str | Path) -> bytes:
    """The whole content of the file at `url`.

    Raises:
        FileNotFoundError: there is no file at `url`.
    """
    fs, path = filesystem(url)
    return fs.cat_file(path)


def write_bytes_atomic(url: str | Path, data: bytes) -> None:
    """Write a whole file so that readers see the old content or the new, never a part.

    Local: a temporary file in the same folder, then a rename (atomic on POSIX). Object stores
    (S3, GCS, the Hub): one put, which the store makes visible whole.
    """
    fs, path = filesystem(url)
    if not is_local(url):
        fs.pipe_file(path, data)
        return
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(url: str | Path, table: pa.Table) -> None:
    """Write an Arrow table as one Parquet file, atomically (see `write_bytes_atomic`).

    The file is built in memory, which a checkpoint batch or a config of a run fits.
    """
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    write_bytes_atomic(url, buffer.getvalue())


def read_parquet(url: str | Path) -> pa.Table:
    """The Parquet file at `url` as an Arrow table."""
    fs, path = filesystem(url)
    return pq.read_table(path, filesystem=fs)


def glob(pattern: str | Path) -> list[str]:
    """Files matching `pattern` (fsspec glob: `*`, `**`, `?`, `[…]`), sorted.

    They come in the caller's form (local paths stay paths, URLs stay URLs). Files other nodes
    wrote are seen: listings are not served from fsspec's cache.
    """
    fs, path = filesystem(pattern)
    fs.invalidate_cache()
    return sorted(_full(fs, p, pattern) for p in fs.glob(path) if not fs.isdir(p))


def exists(url: str | Path) -> bool:
    """Whether a file or folder is at `url`, as of now (fsspec's listing cache is dropped)."""
    fs, path = filesystem(url)
    fs.invalidate_cache()
    return fs.exists(path)


def remove(url: str | Path, missing_ok: bool = True) -> None:
    """Delete one file.

    Raises:
        FileNotFoundError: it does not exist and `missing_ok` is False.
    """
    if not missing_ok and not exists(url):  # S3 deletes a missing key without complaint
        raise FileNotFoundError(str(url))
    fs, path = filesystem(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def copy_folder(source: str | Path, destination: str | Path) -> list[str]:
    """Copy every file under `source` to the same relative path under `destination`.

    Any two URLs: stage a repository folder locally and publish it to `s3://…`, or fetch one
    back; each file is written atomically.

    Returns:
        The relative paths copied, sorted.

    Raises:
        FileNotFoundError: `source` holds no file.
    """
    fs, root = filesystem(source)
    fs.invalidate_cache()
    files = sorted(p for p in fs.find(root) if not fs.isdir(p))
    if not files:
        raise FileNotFoundError(f"no file under {source}")
    copied = []
    for path in files:
        relative = posixpath.relpath(path, root.rstrip("/"))
        write_bytes_atomic(join(destination, *relative.split("/")), fs.cat_file(path))
        copied.append(relative)
    return copied
