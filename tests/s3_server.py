"""A real S3-protocol server on loopback, for the shared-storage paths of cluster runs.

It stands in for AWS S3 and the S3-compatible stores a cluster shares between nodes (MinIO,
Cloudflare R2, Ceph): moto's standalone server (`moto_server`, from `moto[server]`) speaks the S3
HTTP API, so s3fs, pyarrow through fsspec and `datasets.load_dataset` talk to it exactly as they
would to those, through the same environment variables (`AWS_ENDPOINT_URL`, a key pair, a
region). It keeps objects in memory and checks no signature; nothing leaves 127.0.0.1.

    from s3_server import S3Server, s3_server_fixture, s3_session_fixture  # noqa: F401

    def test_x(s3_server: S3Server) -> None:
        url = s3_server.url("run/plan.parquet")   # s3://genteach-test/<test>/run/plan.parquet
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "genteach-test"


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    prefix: str = ""  # each test gets its own folder in the bucket

    @property
    def env(self) -> dict[str, str]:
        """What a process (a CLI run, a Ray worker) needs to reach the server."""
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}  # no probe for cloud instance credentials

    def url(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *filter(None, [self.prefix, *parts])])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session", name="s3_session")
def s3_session_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One server for the test session, with the bucket created."""
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]' s3fs)")
    port = _free_port()
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{port}", BUCKET)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{server.endpoint_url}/moto-api/", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not start: {log.read_text()[-500:]}")
                time.sleep(0.2)
        request = urllib.request.Request(f"{server.endpoint_url}/{BUCKET}", method="PUT")
        urllib.request.urlopen(request, timeout=10).close()
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(name="s3_server")
def s3_server_fixture(s3_session: S3Server, request: pytest.FixtureRequest,
              monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The session's server with this test's own prefix, and its variables in `os.environ` (so
    that subprocesses started by the test inherit them)."""
    for name, value in s3_session.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    prefix = re.sub(r"[^\w.-]", "_", request.node.name)  # parametrized names hold [ ] for glob
    return S3Server(s3_session.endpoint_url, s3_session.bucket, prefix=prefix)


__all__ = ["S3Server", "s3_server_fixture", "s3_session_fixture"]
