"""A small Hugging Face Hub-protocol server on 127.0.0.1, for testing uploads with the real ``huggingface_hub`` client.

No registry package offers a Hub server that accepts uploads (olah mirrors, read-only), so this implements just the
endpoints the 2.x client calls for a round trip. Uploads are taken as regular (non-LFS) files; downloads and listings
report the files ``.gitattributes`` tracks with LFS (``*.safetensors``) as the Hub does: ``ETag`` and
``X-Linked-Etag`` = sha256 of the content, ``lfs.oid`` = that sha256 in tree and paths-info entries:

==========================================  ==================================================================
client call                                  HTTP
==========================================  ==================================================================
``create_repo``                              ``POST /api/repos/create`` (409 when it exists)
``create_commit`` / ``upload_folder``        ``POST /api/{type}s/{repo}/preupload/{rev}``, then
                                             ``POST /api/{type}s/{repo}/commit/{rev}`` (NDJSON)
a README in a commit                         ``POST /api/validate-yaml``
``model_info`` / ``repo_info``               ``GET /api/{type}s/{repo}[/revision/{rev}]``
``list_repo_files`` / ``list_repo_tree``     ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]``
``get_paths_info``                           ``POST /api/{type}s/{repo}/paths-info/{rev}``
``whoami``                                   ``GET /api/whoami-v2``
``hf_hub_download`` / ``snapshot_download``  ``HEAD``/``GET /[datasets/]{repo}/resolve/{rev}/{path}`` (Range supported)
==========================================  ==================================================================

Commits are atomic: a commit request either creates a whole new revision or changes nothing. Writes need a token
with the ``write`` role; a token the server does not know gets 401 on every request that carries it.

Faults for tests: :meth:`HubServer.fail` answers matching requests with a status (optionally after applying the
commit, as a lost response would), :meth:`HubServer.truncate` cuts a download short (dropping the connection, or
with a consistent short ``Content-Length``), :meth:`HubServer.corrupt` serves different bytes of the same size, and
``throttle_bps`` slows downloads so a client can be killed mid-file. Every request is logged in ``requests``.

While a server runs (``with HubServer() as hub``) the process's Hub environment points at it
(:func:`hub_environment`): the tests pass whatever the user exported.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
_API_RE = re.compile(
    r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)"
    r"(?:/(?P<op>preupload|commit|tree|paths-info|revision)/(?P<rev>[^/]+)(?:/(?P<path>.*))?)?$"
)
_RESOLVE_RE = re.compile(r"^/(?P<prefix>datasets/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob (what the client compares regular files against)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The Git LFS pointer file git stores in place of an LFS-tracked file."""
    sha = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()


def is_lfs(path: str, files: dict[str, bytes]) -> bool:
    """Whether ``path`` is LFS-tracked by the commit's ``.gitattributes`` (``<pattern> filter=lfs ...`` lines)."""
    for line in files.get(".gitattributes", b"").decode().splitlines():
        pattern, *attrs = line.split()
        if "filter=lfs" in attrs and fnmatch.fnmatch(path if "/" in pattern else path.rsplit("/", 1)[-1], pattern):
            return True
    return False


@contextlib.contextmanager
def hub_environment(endpoint: str, home: str | Path) -> Iterator[dict[str, str]]:
    """The environment a test against a local Hub needs, whatever the user exported; restored on exit.

    huggingface_hub reads ``HF_HUB_OFFLINE``, ``HF_HOME``, ``HF_ENDPOINT``, the caches and the token path once, when
    it is imported, into ``huggingface_hub.constants``; both the variables (for child processes) and those constants
    (for this process) are set: online, ``HF_HOME=home`` (so no cache or saved token of the user is read),
    ``HF_ENDPOINT=endpoint`` (nothing leaves the machine by accident) and no ``HF_TOKEN``.

    Yields:
        The variables set (to merge into a child process's environment).
    """
    from huggingface_hub import constants

    home = Path(home)
    env = {
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_ENDPOINT": endpoint,
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    unset = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_IMPLICIT_TOKEN")
    consts = {
        "HF_HUB_OFFLINE": False,
        "HF_HOME": env["HF_HOME"],
        "HF_HUB_CACHE": env["HF_HUB_CACHE"],
        "HF_ASSETS_CACHE": env["HF_ASSETS_CACHE"],
        "HF_XET_CACHE": env["HF_XET_CACHE"],
        "HF_TOKEN_PATH": env["HF_TOKEN_PATH"],
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    }
    saved_env = {k: os.environ.get(k) for k in (*env, *unset)}
    saved_consts = {k: getattr(constants, k) for k in consts if hasattr(constants, k)}
    os.environ.update(env)
    for key in unset:
        os.environ.pop(key, None)
    for key, value in consts.items():
        if key in saved_consts:
            setattr(constants, key, value)
    try:
        yield env
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for key, value in saved_consts.items():
            setattr(constants, key, value)


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]
    date: float = field(default_factory=time.time)


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    apply_first: bool = False


@dataclass
class Truncation:
    pattern: re.Pattern[str]
    keep: float
    times: int
    drop_connection: bool


class HubState:
    """Repositories, tokens and pending faults, shared by the handler threads."""

    def __init__(self, tokens: dict[str, tuple[str, str]]):
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.tokens = tokens
        self.faults: list[Fault] = []
        self.truncations: list[Truncation] = []
        self.corruptions: list[tuple[re.Pattern[str], int | None]] = []
        self.throttle_bps: float | None = None
        self.report_oids = True  # preupload tells the client the oid of files already there (as the Hub does)
        self.requests: list[tuple[str, str, int]] = []
        self._counter = 0

    def new_commit(self, repo: Repo, branch: str, files: dict[str, bytes], message: str) -> Commit:
        with self.lock:
            self._counter += 1
            parent = repo.branches.get(branch)
            digest = hashlib.sha1(f"{repo.repo_id}|{parent}|{message}|{self._counter}".encode())
            for path in sorted(files):
                digest.update(path.encode() + git_blob_oid(files[path]).encode())
            commit = Commit(digest.hexdigest(), parent, message, files)
            repo.commits[commit.oid] = commit
            repo.branches[branch] = commit.oid
            return commit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # -- plumbing -----------------------------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    @property
    def state(self) -> HubState:
        return self.server.state

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        if self._lost_response is not None:  # the work is done; the client sees an error instead
            status, body, headers = self._lost_response, json.dumps({"error": "injected fault"}).encode(), None
        self._log(status)
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self._status = status

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        self._json(status, {"error": message}, {"X-Error-Code": code} if code else None)

    def _log(self, status: int) -> None:
        """Log the request once, before its answer is sent: a client that has its answer finds it in the log."""
        self._status = status
        if not self._logged:
            self._logged = True
            with self.state.lock:
                self.state.requests.append((self.command, self.path, status))

    def _dispatch(self, method: str) -> None:
        self._status = 0
        self._logged = False
        self._lost_response: int | None = None
        url = urlsplit(self.path)
        try:
            if self._injected_fault(method, url.path):
                return
            self._route(method, url.path, parse_qs(url.query))
        finally:
            self._log(self._status)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- auth and faults ----------------------------------------------------------------------------------------------
    def _user(self, write: bool) -> tuple[str, str] | None:
        """The (user, role) of the request's token; answers 401/403 itself and returns None when refused."""
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        if token is None:
            if write:
                self._error(401, "Invalid credentials in Authorization header: a token is required")
                return None
            return ("anonymous", "read")
        if token not in self.state.tokens:
            self._error(401, "Invalid credentials in Authorization header")
            return None
        user = self.state.tokens[token]
        if write and user[1] != "write":
            self._error(403, f"You don't have the rights to write with this token (role: {user[1]})")
            return None
        return user

    def _injected_fault(self, method: str, path: str) -> bool:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.times > 0 and fault.method in (method, "*") and fault.pattern.search(path):
                    fault.times -= 1
                    break
            else:
                return False
        if fault.apply_first:  # the operation happens but its response is lost, as behind a failing proxy
            self._lost_response = fault.status
            self._route(method, path, {})
            return True
        self._body()
        self._error(fault.status, f"injected fault: {fault.status}")
        return True

    # -- routing ------------------------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo()
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml()
        if method == "GET" and path == "/api/whoami-v2":
            return self._whoami()
        if m := _API_RE.match(path):
            repo_type = m["type"][:-1]
            op, rev = m["op"], unquote(m["rev"] or "main")
            sub = unquote(m["path"] or "")
            if method == "POST" and op == "preupload":
                return self._preupload(repo_type, m["repo"], rev)
            if method == "POST" and op == "commit":
                return self._commit(repo_type, m["repo"], rev)
            if method == "POST" and op == "paths-info":
                return self._paths_info(repo_type, m["repo"], rev)
            if method == "GET" and op == "tree":
                return self._tree(repo_type, m["repo"], rev, sub, query)
            if method == "GET" and op in (None, "revision"):
                return self._info(repo_type, m["repo"], rev if op else "main")
        if (m := _RESOLVE_RE.match(path)) and method in ("GET", "HEAD"):
            repo_type = "dataset" if m["prefix"] else "model"
            return self._resolve(method, repo_type, m["repo"], unquote(m["rev"]), unquote(m["path"]))
        self._body()
        self._error(404, f"no route for {method} {path}")

    def _repo(self, repo_type: str, repo_id: str, write: bool) -> Repo | None:
        if self._user(write) is None:
            return None
        repo = self.state.repos.get((repo_type, repo_id))
        if repo is None:
            self._error(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, rev: str) -> Commit | None:
        commit = repo.resolve(rev)
        if commit is None:
            self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    # -- endpoints ----------------------------------------------------------------------------------------------------
    def _whoami(self) -> None:
        user = self._user(write=True)
        if user is not None:
            self._json(200, {"type": "user", "name": user[0], "auth": {"accessToken": {"role": user[1]}}})

    def _create_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        if self._user(write=True) is None:
            return
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if "/" not in repo_id:
            repo_id = f"{self.state.tokens[self.headers['Authorization'][7:]][0]}/{repo_id}"
        url = f"{self.server.url}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
        with self.state.lock:
            if (repo_type, repo_id) in self.state.repos:
                return self._json(409, {"error": "You already created this repo", "url": url})
            repo = Repo(repo_id, repo_type, private=payload.get("visibility") == "private")
            self.state.repos[(repo_type, repo_id)] = repo
            self.state.new_commit(repo, "main", {".gitattributes": GITATTRIBUTES}, "initial commit")
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        payload = json.loads(self._body() or b"{}")
        match = re.match(r"^\s*---\n(.*?)\n---", payload.get("content", ""), flags=re.S)
        if match is None:
            return self._json(200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
        try:
            meta = yaml.safe_load(match.group(1))
        except yaml.YAMLError as e:
            return self._json(400, {"errors": [{"message": f"invalid YAML: {e}"}], "warnings": []})
        errors = [] if isinstance(meta, dict) else [{"message": "metadata must be a mapping"}]
        for entry in (meta or {}).get("model-index", []) if isinstance(meta, dict) else []:
            for result in entry.get("results", []):
                if not {"task", "dataset", "metrics"} <= set(result):
                    errors.append({"message": "model-index results need task, dataset and metrics"})
        self._json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _preupload(self, repo_type: str, repo_id: str, rev: str) -> None:
        payload = json.loads(self._body() or b"{}")
        repo = self._repo(repo_type, repo_id, write=True)
        if repo is None or (commit := self._commit_at(repo, rev)) is None:
            return
        files = []
        for f in payload.get("files", []):
            existing = commit.files.get(f["path"])
            entry = {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
            if self.state.report_oids:
                entry["oid"] = git_blob_oid(existing) if existing is not None else None
            files.append(entry)
        self._json(200, {"files": files, "commitOid": commit.oid})

    def _commit(self, repo_type: str, repo_id: str, rev: str) -> None:
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        repo = self._repo(repo_type, repo_id, write=True)
        if repo is None:
            return
        if rev not in repo.branches:
            return self._error(404, f"Invalid rev id: {rev} (commits go to a branch)", "RevisionNotFound")
        header = next((x["value"] for x in lines if x["key"] == "header"), None)
        if header is None or not header.get("summary"):
            return self._error(400, "the commit needs a header with a summary")
        with self.state.lock:
            head = repo.resolve(rev)
            assert head is not None
            parent = header.get("parentCommit")
            if parent and not head.oid.startswith(parent):
                return self._error(412, f"A commit has happened since {parent}: head is now {head.oid}")
            files = dict(head.files)
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        return self._error(400, f"unsupported encoding {value.get('encoding')!r}")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        return self._error(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(prefix)}
                elif key != "header":
                    return self._error(400, f"unsupported commit operation {key!r} (this server takes regular files)")
            commit = self.state.new_commit(repo, rev, files, header["summary"])
        url_prefix = f"{self.server.url}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
        self._json(
            200,
            {"success": True, "commitOid": commit.oid, "commitUrl": f"{url_prefix}/commit/{commit.oid}",
             "commitMessage": header["summary"], "pullRequestUrl": None},
        )  # fmt: skip

    def _entry(self, path: str, data: bytes, files: dict[str, bytes]) -> dict[str, Any]:
        if not is_lfs(path, files):
            return {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
        # as the Hub: the git oid is the pointer's, the LFS oid is the sha256 of the content
        pointer = lfs_pointer(data)
        lfs = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}
        return {"type": "file", "oid": git_blob_oid(pointer), "size": len(data), "path": path, "lfs": lfs}

    def _info(self, repo_type: str, repo_id: str, rev: str) -> None:
        repo = self._repo(repo_type, repo_id, write=False)
        if repo is None or (commit := self._commit_at(repo, rev)) is None:
            return
        self._json(
            200,
            {"_id": repo_id, "id": repo_id, "modelId": repo_id, "sha": commit.oid, "private": repo.private,
             "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [], "author": repo_id.split("/")[0],
             "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date)),
             "siblings": [{"rfilename": p} for p in sorted(commit.files)]},
        )  # fmt: skip

    def _tree(self, repo_type: str, repo_id: str, rev: str, sub: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_type, repo_id, write=False)
        if repo is None or (commit := self._commit_at(repo, rev)) is None:
            return
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, data in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):
                folder = prefix + "/".join(rest[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, {"type": "directory", "oid": "0" * 40, "size": 0, "path": folder})
                if not recursive:
                    break
            if recursive or len(rest) == 1:
                entries[path] = self._entry(path, data, commit.files)
        if prefix and not entries:
            return self._error(404, f"{sub} does not exist at {rev}", "EntryNotFound")
        self._json(200, list(entries.values()))

    def _paths_info(self, repo_type: str, repo_id: str, rev: str) -> None:
        form = parse_qs(self._body().decode())
        repo = self._repo(repo_type, repo_id, write=False)
        if repo is None or (commit := self._commit_at(repo, rev)) is None:
            return
        out = []
        for path in form.get("paths", []):
            if path in commit.files:
                out.append(self._entry(path, commit.files[path], commit.files))
            elif any(p.startswith(path.rstrip("/") + "/") for p in commit.files):
                out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": path})
        self._json(200, out)

    def _resolve(self, method: str, repo_type: str, repo_id: str, rev: str, path: str) -> None:
        repo = self._repo(repo_type, repo_id, write=False)
        if repo is None or (commit := self._commit_at(repo, rev)) is None:
            return
        data = commit.files.get(path)
        if data is None:
            return self._error(404, f"{path} does not exist at {rev}", "EntryNotFound")
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{git_blob_oid(data)}"',
            "Accept-Ranges": "bytes",
        }
        if is_lfs(path, commit.files):
            # as the Hub for LFS files: the ETag is the sha256 of the content, also in X-Linked-Etag (which the
            # client prefers: on the Hub the answer is a redirect to the CDN) with the size in X-Linked-Size
            sha = hashlib.sha256(data).hexdigest()
            headers.update({"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))})
        if method == "HEAD":
            return self._send(200, b"", {**headers, "Content-Length": str(len(data))}, head=True)
        status, start = 200, 0
        if m := re.match(r"bytes=(\d+)-", self.headers.get("Range", "")):
            status, start = 206, int(m.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        with self.state.lock:
            for pattern, at in self.state.corruptions:
                if pattern.search(path):
                    flipped = bytearray(data)
                    for i in range(64) if at is None else (at,):
                        flipped[i] ^= 0xFF
                    data = bytes(flipped)
            body = data[start:]
            trunc = next((t for t in self.state.truncations if t.times > 0 and t.pattern.search(path)), None)
            if trunc is not None:
                trunc.times -= 1
        if trunc is not None and not trunc.drop_connection:
            # a consistent but short answer: the body and its Content-Length agree, the file does not
            return self._send(status, body[: int(len(body) * trunc.keep)], headers)
        self._log(status)
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if trunc is not None:  # promise the whole body, send part of it, hang up
            self.wfile.write(body[: int(len(body) * trunc.keep)])
            self.wfile.flush()
            self.close_connection = True
            return
        step = 1 << 16
        for i in range(0, len(body), step):
            self.wfile.write(body[i : i + step])
            if self.state.throttle_bps:
                time.sleep(step / self.state.throttle_bps)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    url: str


class HubServer:
    """A Hub-protocol server on a free 127.0.0.1 port, run in a daemon thread (use as a context manager).

    Args:
        tokens: token -> (user name, role); role ``"write"`` may create repos and commit, ``"read"`` may not.
    """

    def __init__(self, tokens: dict[str, tuple[str, str]] | None = None):
        self.state = HubState(tokens or {"hf_test_write": ("tester", "write"), "hf_test_read": ("reader", "read")})
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.url = self._server.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        # the environment the client needs to talk to this server, whatever the user exported (HF_HUB_OFFLINE=1, ...)
        self._stack = contextlib.ExitStack()
        home = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="hub-home-"))
        self.env = self._stack.enter_context(hub_environment(self.url, home))
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._stack.close()

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request so far."""
        return list(self.state.requests)

    def fail(self, pattern: str, status: int = 500, times: int = 1, method: str = "*", apply_first: bool = False):
        """Answer the next ``times`` requests whose path matches ``pattern`` with ``status``.

        Args:
            pattern: regular expression searched in the request path.
            status: HTTP status to answer with.
            times: how many requests fail.
            method: ``GET``/``HEAD``/``POST`` or ``*``.
            apply_first: carry out the request (e.g. create the commit), then answer with the error.
        """
        with self.state.lock:
            self.state.faults.append(Fault(method, re.compile(pattern), status, times, apply_first))

    def truncate(self, pattern: str, keep: float = 0.5, times: int = 1, drop_connection: bool = True) -> None:
        """Cut the next ``times`` downloads of matching files to a fraction ``keep`` of their bytes."""
        with self.state.lock:
            self.state.truncations.append(Truncation(re.compile(pattern), keep, times, drop_connection))

    def corrupt(self, pattern: str, at: int | None = None) -> None:
        """Serve matching files with bytes flipped (same size, same headers) until :meth:`clear`.

        Args:
            pattern: regular expression searched in the file's path.
            at: flip the one byte at this offset; default the first 64 bytes.
        """
        with self.state.lock:
            self.state.corruptions.append((re.compile(pattern), at))

    def clear(self) -> None:
        """Drop every pending fault, truncation, corruption and the throttle."""
        with self.state.lock:
            self.state.faults.clear()
            self.state.truncations.clear()
            self.state.corruptions.clear()
            self.state.throttle_bps = None
            self.state.report_oids = True

    def head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> Commit:
        """The commit a branch points at (read directly, not over HTTP)."""
        repo = self.state.repos[(repo_type, repo_id)]
        return repo.commits[repo.branches[branch]]
