"""A local fake Hugging Face Hub for the end-to-end round trip tests (standard library only).

Model repositories only, and only the endpoints `push_to_hub` (transformers and peft) and `from_pretrained` use:
``POST /api/repos/create``, ``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}`` (every file
"regular", never LFS or Xet: set ``HF_HUB_DISABLE_XET=1``), ``POST /api/models/{repo}/commit/{rev}`` (NDJSON with
base64 file contents), ``GET /api/models/{repo}`` and ``HEAD`` / ``GET /{repo}/resolve/{rev}/{path}`` (with
``ETag``, ``X-Repo-Commit``, ``Content-Length``; a missing file answers 404 ``EntryNotFound``). Anything else is
a 404 naming the route, so a test that starts needing another endpoint says so. Every other Hub use of the
package is tested at the public ``huggingface_hub`` boundary instead (tests/hub_mocks.py).

Repositories live in memory with a linear commit history (one branch, ``main``). Every request is recorded in
:attr:`FakeHub.requests` (method, path, whether an ``Authorization`` header was sent, the uploaded paths).
Use it through the ``hub`` pytest fixture (``tests/hub_fixtures.py``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


def git_blob_oid(content: bytes) -> str:
    """The git SHA-1 of a blob: what the Hub reports as a regular file's oid (and huggingface_hub computes locally)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    title: str
    files: dict[str, bytes]
    date: str


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool = False
    commits: list[Commit] = field(default_factory=list)

    def head(self) -> Commit:
        return self.commits[-1]

    def at(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        if revision in ("main", "refs/heads/main", "HEAD"):
            return self.head()
        for commit in reversed(self.commits):
            if commit.oid == revision or (len(revision) >= 7 and commit.oid.startswith(revision)):
                return commit
        return None


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    authorized: bool
    uploaded: list[str] = field(default_factory=list)
    status: int = 0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class FakeHub:
    """The in-memory state and the HTTP server. ``start()`` binds 127.0.0.1 on a free port."""

    def __init__(self, user: str = "user") -> None:
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[RecordedRequest] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeHub":
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers for tests
    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """Files of a repository at a revision (default: the head of ``main``): path -> content."""
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
            if repo is None:
                raise KeyError(f"no {repo_type} repository {repo_id!r} on the fake Hub")
            commit = repo.at(revision)
            if commit is None:
                raise KeyError(f"no revision {revision!r} in {repo_id!r}")
            return dict(commit.files)

    def commits(self, repo_id: str, repo_type: str = "model") -> list[Commit]:
        with self.lock:
            return list(self.repos[(repo_type, repo_id)].commits)

    def uploaded_paths(self) -> list[str]:
        return [path for request in self.requests for path in request.uploaded]

    def create(self, repo_id: str, repo_type: str = "model", private: bool = False) -> Repo:
        with self.lock:
            repo = Repo(repo_id, repo_type, private)
            repo.commits.append(
                Commit(git_blob_oid(f"init {repo_type}/{repo_id}".encode()), "initial commit", {}, _now())
            )
            self.repos[(repo_type, repo_id)] = repo
            return repo


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    # One request per connection: a client's pooled keep-alive connection must never outlive the server (a later
    # server on the same port would otherwise be answered by this one's handler thread).
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet: tests read FakeHub.requests instead
        pass

    # ------------------------------------------------------------------ plumbing
    def _record(self, method: str) -> RecordedRequest:
        split = urlsplit(self.path)
        auth = self.headers.get("Authorization") or ""
        record = RecordedRequest(method, unquote(split.path), split.query, auth.startswith("Bearer "))
        with self.fake.lock:
            self.fake.requests.append(record)
        return record

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
        self._current.status = status
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict[str, str] | None = None, head: bool = False):
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}, head)

    def _error(self, status: int, code: str | None, message: str, head: bool = False):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers, head)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str):
        self._current = self._record(method)
        body = self._body() if method == "POST" else b""
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query)
        try:
            self._route(method, path, query, body)
        except Exception as err:  # pragma: no cover - surfaced to the client as a 500 with the message
            self._error(500, None, f"fake hub error: {type(err).__name__}: {err}", head=method == "HEAD")

    # ------------------------------------------------------------------ routing
    def _split_repo(self, rest: list[str]) -> tuple[str, list[str]]:
        """``namespace/name/<more>`` -> (repo_id, more). Repositories always have a namespace here."""
        return "/".join(rest[:2]), rest[2:]

    def _route(self, method: str, path: str, query: dict, body: bytes):
        parts = [p for p in path.split("/") if p != ""]
        head = method == "HEAD"
        if parts[:1] == ["api"]:
            return self._api(method, parts[1:], query, body)
        repo_type = "model"  # file resolution: /{repo}/resolve/{rev}/{path}
        if len(parts) >= 4 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id = "/".join(parts[:2])
            # the revision may itself be url-encoded with slashes (refs/pr/1): it was unquoted with the path
            revision, filename = parts[3], "/".join(parts[4:])
            return self._resolve(repo_type, repo_id, revision, filename, head)
        return self._error(404, None, f"no route for {method} {path}", head)

    def _repo(self, repo_type: str, repo_id: str, head: bool = False) -> Repo | None:
        with self.fake.lock:
            repo = self.fake.repos.get((repo_type, repo_id))
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.", head)
        return repo

    def _commit_or_404(self, repo: Repo, revision: str, head: bool = False) -> Commit | None:
        commit = repo.at(revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
        return commit

    def _resolve(self, repo_type: str, repo_id: str, revision: str, filename: str, head: bool):
        repo = self._repo(repo_type, repo_id, head)
        if repo is None:
            return
        commit = self._commit_or_404(repo, revision, head)
        if commit is None:
            return
        if filename not in commit.files:
            return self._error(404, "EntryNotFound", f"Entry not found: {filename}", head)
        content = commit.files[filename]
        etag = f'"{git_blob_oid(content)}"'
        headers = {
            "ETag": etag,
            "X-Repo-Commit": commit.oid,
            "Content-Type": "application/octet-stream",
        }
        self._current.status = 200
        self.send_response(200)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        if not head:
            self.wfile.write(content)

    def _api(self, method: str, parts: list[str], query: dict, body: bytes):
        head = method == "HEAD"
        if parts == ["repos", "create"] and method == "POST":
            return self._create_repo(json.loads(body or b"{}"))
        if parts == ["validate-yaml"] and method == "POST":
            return self._json(200, {"errors": [], "warnings": []})
        if len(parts) >= 3 and parts[0] == "models":
            repo_id, rest = self._split_repo(parts[1:])
            return self._repo_api(method, "model", repo_id, rest, query, body)
        return self._error(404, None, f"no API route for {method} /api/{'/'.join(parts)}", head)

    def _create_repo(self, payload: dict):
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or self.fake.user
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.fake.url}/{repo_id}"
        with self.fake.lock:
            if (repo_type, repo_id) in self.fake.repos:
                return self._json(409, {"error": "You already created this repo", "url": url})
            self.fake.create(repo_id, repo_type, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        return self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _info(self, repo: Repo, commit: Commit) -> dict:
        return {"id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.oid, "private": repo.private,
                "lastModified": commit.date, "tags": [],
                "siblings": [{"rfilename": name, "size": len(data)} for name, data in sorted(commit.files.items())]}

    def _repo_api(self, method: str, repo_type: str, repo_id: str, rest: list[str], query: dict, body: bytes):
        head = method == "HEAD"
        repo = self._repo(repo_type, repo_id, head)
        if repo is None:
            return
        action = rest[0] if rest else ""
        if method in ("GET", "HEAD") and not rest:
            return self._json(200, self._info(repo, repo.head()), head=head)
        if method == "POST" and action == "preupload":
            return self._preupload(repo, "/".join(rest[1:]), json.loads(body or b"{}"))
        if method == "POST" and action == "commit":
            return self._commit(repo, "/".join(rest[1:]), body, query)
        return self._error(404, None, f"no API route for {method} {repo_type}s/{repo_id}/{'/'.join(rest)}", head)

    def _preupload(self, repo: Repo, revision: str, payload: dict):
        commit = self._commit_or_404(repo, revision)
        if commit is None:
            return
        files = []
        for item in payload.get("files", []):
            existing = commit.files.get(item["path"])
            files.append({
                "path": item["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_oid(existing) if existing is not None else None,
            })
        return self._json(200, {"files": files, "commitOid": commit.oid})

    def _commit(self, repo: Repo, revision: str, body: bytes, query: dict):
        if query.get("create_pr"):
            return self._error(400, None, "pull requests are not supported by the fake Hub")
        with self.fake.lock:
            parent = repo.at(revision)
            if parent is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            files = dict(parent.files)
            title = ""
            uploaded = []
            for line in body.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    title = value.get("summary", "")
                    parent_commit = value.get("parentCommit")
                    if parent_commit and parent_commit != parent.oid:
                        return self._error(412, None, "A commit has happened since. Please refresh and try again.")
                elif key == "file":
                    if value.get("encoding", "base64") != "base64":
                        return self._error(400, None, f"unsupported encoding {value.get('encoding')}")
                    files[value["path"]] = base64.b64decode(value["content"])
                    uploaded.append(value["path"])
                elif key in ("lfsFile", "copyFile", "deletedFile", "deletedFolder"):
                    return self._error(400, None, f"the fake Hub accepts regular (base64) files only, got {key}")
                else:
                    return self._error(400, None, f"unknown commit operation {key}")
            digest = hashlib.sha1(repr((parent.oid, title, sorted((k, git_blob_oid(v)) for k, v in files.items()))).encode())
            commit = Commit(digest.hexdigest(), title, files, _now())
            repo.commits.append(commit)
            self._current.uploaded = uploaded
        url = f"{self.fake.url}/{repo.repo_id}/commit/{commit.oid}"
        return self._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None})
