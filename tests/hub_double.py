"""A local HTTP double of the Hugging Face Hub API: just what a dataset push uses.

The real Hub cannot be reached from the machines these tests run on, so the push is tested
against this server on 127.0.0.1, reached by huggingface_hub through `HF_ENDPOINT`. It speaks the
protocol huggingface_hub 2.x uses when hf_xet is disabled (`HF_HUB_DISABLE_XET=1`; with hf_xet the
file bytes go to Xet storage instead, but the commit API is the same):

    POST /api/repos/create                              create (409 if it exists)
    POST /api/validate-yaml                             README metadata check before upload
    GET  /api/datasets/{repo}/tree/{rev}                list files (remote files to delete)
    GET  /api/datasets/{repo}/revision/{rev}            repo info (answer to a no-op commit)
    POST /api/datasets/{repo}/preupload/{rev}           regular vs LFS per file, and remote oids
    POST /datasets/{repo}.git/info/lfs/objects/batch    Git LFS batch API, "basic" transfer
    PUT  /lfs/{oid}   POST /lfs/verify                  LFS object upload and verify
    POST /api/datasets/{repo}/commit/{rev}              ndjson commit, applied whole or not at all

Like the Hub, a new repo starts with a `.gitattributes` commit, LFS objects must be uploaded (and
match their sha256) before a commit may name them, and writes need the right bearer token.
Every request body is kept, so tests can check that no byte sent contains the token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

LFS_SUFFIXES = (".parquet", ".png", ".jpg", ".arrow", ".bin", ".gz", ".zip", ".safetensors")
GITATTRIBUTES = b"".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n".encode() for s in LFS_SUFFIXES)
REPO = r"(?P<repo>[\w.\-]+/[\w.\-]+)"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    summary: str
    operations: list[dict[str, Any]]  # {"key": file|lfsFile|deletedFile|deletedFolder, "path"}


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=lambda: {".gitattributes": GITATTRIBUTES})
    lfs_paths: set[str] = field(default_factory=set)
    commits: list[Commit] = field(default_factory=list)  # pushes, not the creation commit

    @property
    def sha(self) -> str:
        return hashlib.sha1(str(len(self.commits)).encode()).hexdigest()

    def oid(self, path: str) -> str | None:
        """What the preupload endpoint reports: sha256 for LFS files, git sha1 otherwise."""
        if path not in self.files:
            return None
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if path in self.lfs_paths else git_blob_sha1(data)


class HubDouble:
    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.bodies: list[bytes] = []  # every request body received
        self.fail_commits = False  # answer commits with 500, as a Hub outage would
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HubDouble:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # Endpoints: each returns (status, JSON payload[, headers]).
    def create_repo(self, body: dict) -> tuple[int, dict]:
        repo_id = f"{body['organization']}/{body['name']}"
        if body.get("type") != "dataset":
            return 400, {"error": "this double only hosts datasets"}
        if repo_id in self.repos:
            return 409, {"error": "You already created this dataset repo", "url": self._url(repo_id)}
        self.repos[repo_id] = Repo(private=body.get("visibility") == "private")
        return 200, {"url": self._url(repo_id), "name": repo_id}

    def validate_yaml(self, body: dict) -> tuple[int, dict]:
        match = re.match(r"---\n(.*?)\n---\n", body["content"], re.DOTALL)
        try:
            metadata = yaml.safe_load(match[1]) if match else {}
        except yaml.YAMLError as error:
            return 400, {"errors": [{"message": str(error)}]}
        if not isinstance(metadata, dict):
            return 400, {"errors": [{"message": "metadata must be a mapping"}]}
        return 200, {"errors": [], "warnings": []}

    def tree(self, repo: Repo) -> tuple[int, list]:
        return 200, [{"type": "file", "path": p, "size": len(d), "oid": git_blob_sha1(d)}
                     for p, d in sorted(repo.files.items())]

    def revision(self, repo_id: str, repo: Repo) -> tuple[int, dict]:
        return 200, {"id": repo_id, "sha": repo.sha, "private": repo.private,
                     "siblings": [{"rfilename": p} for p in sorted(repo.files)]}

    def preupload(self, repo: Repo, body: dict) -> tuple[int, dict]:
        files = []
        for item in body["files"]:
            sample = base64.b64decode(item["sample"])
            lfs = (item["path"].endswith(LFS_SUFFIXES) or b"\0" in sample
                   or item["size"] > 10 * 2**20)
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular",
                          "shouldIgnore": False, "oid": repo.oid(item["path"])})
        return 200, {"files": files}

    def lfs_batch(self, body: dict) -> tuple[int, dict]:
        objects = []
        for obj in body["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs/{obj['oid']}"},
                                    "verify": {"href": f"{self.url}/lfs/verify"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def lfs_upload(self, oid: str, data: bytes) -> tuple[int, dict]:
        if hashlib.sha256(data).hexdigest() != oid:
            return 400, {"error": "sha256 does not match the oid"}
        self.lfs_objects[oid] = data
        return 200, {}

    def lfs_verify(self, body: dict) -> tuple[int, dict]:
        stored = self.lfs_objects.get(body["oid"])
        return (200, {}) if stored is not None and len(stored) == body["size"] else (404, {})

    def commit(self, repo_id: str, repo: Repo, body: bytes) -> tuple[int, dict]:
        if self.fail_commits:
            return 500, {"error": "Internal Error - We're working hard to fix this as soon as possible!"}
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header, operations = lines[0]["value"], lines[1:]
        files, lfs_paths = dict(repo.files), set(repo.lfs_paths)
        for op in operations:
            path, value = op["value"]["path"], op["value"]
            if op["key"] == "file":
                files[path] = base64.b64decode(value["content"])
                lfs_paths.discard(path)
            elif op["key"] == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    return 422, {"error": f"LFS object {value['oid']} for {path} was never uploaded"}
                files[path] = self.lfs_objects[value["oid"]]
                lfs_paths.add(path)
            elif op["key"] == "deletedFile":
                files.pop(path)
            elif op["key"] == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(path.rstrip("/") + "/")}
            else:
                return 400, {"error": f"unknown operation {op['key']}"}
        repo.files, repo.lfs_paths = files, lfs_paths & set(files)
        repo.commits.append(Commit(header["summary"],
                                   [{"key": op["key"], "path": op["value"]["path"]} for op in operations]))
        return 200, {"success": True, "commitOid": repo.sha,
                     "commitUrl": f"{self._url(repo_id)}/commit/{repo.sha}"}

    def _url(self, repo_id: str) -> str:
        return f"{self.url}/datasets/{repo_id}"


def _handler(hub: HubDouble) -> type[BaseHTTPRequestHandler]:
    api = r"/api/datasets/" + REPO

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:  # noqa: N802
            self._route(b"")

        def do_POST(self) -> None:  # noqa: N802
            self._route(self._body())

        def do_PUT(self) -> None:  # noqa: N802
            self._route(self._body())

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _route(self, body: bytes) -> None:
            with hub._lock:
                hub.bodies.append(body)
                status, payload, headers = self._dispatch(body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _dispatch(self, body: bytes) -> tuple[int, Any, dict[str, str]]:
            path = self.path.split("?")[0]
            if self.command == "PUT" and (m := re.fullmatch(r"/lfs/(?P<oid>[0-9a-f]{64})", path)):
                return (*hub.lfs_upload(m["oid"], body), {})
            if self.headers.get("Authorization") != f"Bearer {hub.token}":
                return 401, {"error": "Invalid credentials in Authorization header"}, {}
            routes = [
                ("POST", r"/api/repos/create", lambda m: hub.create_repo(json.loads(body))),
                ("POST", r"/api/validate-yaml", lambda m: hub.validate_yaml(json.loads(body))),
                ("POST", r"/lfs/verify", lambda m: hub.lfs_verify(json.loads(body))),
                ("POST", r"/datasets/" + REPO + r"\.git/info/lfs/objects/batch",
                 lambda m: hub.lfs_batch(json.loads(body))),
                ("GET", api + r"/tree/[^/]+(/.*)?", lambda m: hub.tree(self._repo(m))),
                ("GET", api + r"/revision/[^/]+", lambda m: hub.revision(m["repo"], self._repo(m))),
                ("POST", api + r"/preupload/[^/]+",
                 lambda m: hub.preupload(self._repo(m), json.loads(body))),
                ("POST", api + r"/commit/[^/]+", lambda m: hub.commit(m["repo"], self._repo(m), body)),
            ]
            for method, pattern, endpoint in routes:
                if self.command == method and (m := re.fullmatch(pattern, path)):
                    if "repo" in m.groupdict() and m["repo"] not in hub.repos:
                        return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                    return (*endpoint(m), {})
            return 404, {"error": f"the double has no {self.command} {path}"}, {}

        def _repo(self, match: re.Match) -> Repo:
            return hub.repos[match["repo"]]

    return Handler
