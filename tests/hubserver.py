"""A Hugging Face hub stand-in on 127.0.0.1 for tests: repos held in memory, one git-like commit per change.

It answers what huggingface_hub and datasets ask of the hub when reading and pushing files:

* ``HEAD/GET /[datasets/]ORG/REPO/resolve/REV/PATH`` with ``ETag``, ``X-Repo-Commit``, ``Content-Length``
  and ``Range`` support (hf_hub_download, HfFileSystem reads); a missing file answers 404 with
  ``X-Error-Code: EntryNotFound``, a missing repo ``RepoNotFound``, a missing revision ``RevisionNotFound``;
* ``GET /api/{models,datasets}/ORG/REPO[/revision/REV]`` (repo info with siblings),
  ``GET /api/.../tree/REV[/PATH]`` and ``POST /api/.../paths-info/REV`` (HfFileSystem listings);
* ``POST /api/repos/create``, ``POST /api/validate-yaml``, ``POST /api/.../preupload/REV`` (every file "regular") and
  ``POST /api/.../commit/REV`` (ndjson with base64 file contents): HfApi.create_commit / upload_file.

``faults`` injects errors: ``hub.faults["/ORG/REPO/resolve/main/x.tar"] = [503, 503]`` answers the next two
requests for that path with 503; ``stall[prefix] = [n, threading.Event()]`` lets n requests under that path
pass, then holds the next ones unread (``stalled`` is set) until the event is set, and drops them unapplied. ``requests`` logs (method, path) of every request, ``auth`` its
Authorization header.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class HubStandIn:
    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], dict] = {}  # (type, repo_id) -> {"refs": {name: sha}, "commits": {sha: {path: bytes}}}
        self.faults: dict[str, list[int]] = {}
        self.stall: dict[str, list] = {}  # path prefix -> [n, event]: let n such requests pass, hold the next ones
        self.stalled = threading.Event()  # set when a request is being held
        self.requests: list[tuple[str, str]] = []
        self.auth: list[str | None] = []  # Authorization header of every request
        self.served: dict[str, int] = {}  # file path -> body bytes sent (range requests count their part)
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- repo content --------------------------------------------------------------------------------
    def commit(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", branch: str = "main",
               deleted: tuple[str, ...] = ()) -> str:
        """A new commit on `branch` = its previous tree + `files` - `deleted`; returns the 40-hex sha."""
        with self.lock:
            repo = self.repos.setdefault((repo_type, repo_id), {"refs": {}, "commits": {}})
            parent = repo["refs"].get(branch)
            tree = dict(repo["commits"][parent]) if parent else {}
            tree.update(files)
            for d in deleted:
                tree.pop(d, None)
            sha = hashlib.sha1(json.dumps([parent, sorted((p, _sha(b)) for p, b in tree.items())]).encode()).hexdigest()
            repo["commits"][sha] = tree
            repo["refs"][branch] = sha
            return sha

    def tree(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        repo = self.repos[(repo_type, repo_id)]
        return repo["commits"][repo["refs"].get(revision, revision)]

    def _resolve(self, repo_type: str, repo_id: str, rev: str) -> tuple[str | None, dict | None, str]:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            return None, None, "RepoNotFound"
        rev = unquote(rev)
        sha = repo["refs"].get(rev, rev if rev in repo["commits"] else None)
        if sha is None:
            return None, None, "RevisionNotFound"
        return sha, repo["commits"][sha], ""


def _split_repo(parts: list[str]) -> tuple[str, str, list[str]]:
    """['datasets', 'org', 'name', ...] -> ('dataset', 'org/name', rest); ['org', 'name', ...] -> model."""
    if parts and parts[0] in ("datasets", "models", "spaces"):
        return parts[0][:-1], "/".join(parts[1:3]), parts[3:]
    return "model", "/".join(parts[:2]), parts[2:]


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    # -- plumbing ------------------------------------------------------------------------------------
    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(code)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, obj: object, code: int = 200) -> None:
        self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _error(self, code: int, error_code: str, message: str, head: bool = False) -> None:
        self._send(code, json.dumps({"error": message}).encode(),
                   {"Content-Type": "application/json", "X-Error-Code": error_code, "X-Error-Message": message}, head)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _fault(self, path: str, head: bool) -> bool:
        with self.hub.lock:
            codes = self.hub.faults.get(path)
            code = codes.pop(0) if codes else None
        if code is None:
            return False
        self._body()
        self._send(code, b"injected fault", {"Content-Type": "text/plain"}, head)
        return True

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        path = unquote(url.path)
        self.hub.requests.append((method, path))
        self.hub.auth.append(self.headers.get("Authorization"))
        if self._fault(path, method == "HEAD"):
            return
        held = None
        with self.hub.lock:
            for prefix, rule in self.hub.stall.items():
                if path.startswith(prefix) and not rule[1].is_set():
                    if rule[0] > 0:
                        rule[0] -= 1
                    else:
                        held = rule[1]
        if held is not None:  # as if the body were still on its way: never applied, connection dropped
            self.hub.stalled.set()
            held.wait(300)
            self.close_connection = True
            return
        parts = [p for p in path.split("/") if p]
        try:
            if parts[:1] == ["api"]:
                self._api(method, parts[1:], parse_qs(url.query))
            elif "resolve" in parts:
                self._file(method, parts)
            else:
                self._error(404, "NotFound", f"no route {path}")
        except BrokenPipeError:
            pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("HEAD")

    def do_GET(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    # -- files ---------------------------------------------------------------------------------------
    def _file(self, method: str, parts: list[str]) -> None:
        i = parts.index("resolve")
        repo_type, repo_id, _ = _split_repo(parts[:i])
        rev, fpath = parts[i + 1], "/".join(parts[i + 2:])
        head = method == "HEAD"
        sha, tree, err = self.hub._resolve(repo_type, repo_id, rev)
        if sha is None:
            return self._error(404 if err == "RevisionNotFound" else 401, err, f"{repo_id}@{rev}: {err}", head)
        if fpath not in tree:
            return self._error(404, "EntryNotFound", f"{fpath} not in {repo_id}@{rev}", head)
        data = tree[fpath]
        headers = {"ETag": f'"{_sha(data)}"', "X-Repo-Commit": sha, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and not head:
            a, _, b = rng[6:].partition("-")
            start = int(a) if a else max(0, len(data) - int(b))
            end = min(int(b), len(data) - 1) if (a and b) else len(data) - 1
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._count(parts, end + 1 - start)
            return self._send(206, data[start:end + 1], headers)
        self._count(parts, 0 if head else len(data))
        self._send(200, data, {**headers, "Content-Length": str(len(data))}, head)

    def _count(self, parts: list[str], n: int) -> None:
        key = "/" + "/".join(parts)
        with self.hub.lock:
            self.hub.served[key] = self.hub.served.get(key, 0) + n

    # -- API -----------------------------------------------------------------------------------------
    def _entries(self, tree: dict[str, bytes], prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        out, dirs = [], set()
        for p in sorted(tree):
            if prefix and not p.startswith(prefix + "/"):
                continue
            rest = p[len(prefix) + 1:] if prefix else p
            segs = rest.split("/")
            for k in range(1, len(segs)):
                d = "/".join(([prefix] if prefix else []) + segs[:k])
                if (recursive or k == 1) and d not in dirs:
                    dirs.add(d)
                    out.append({"type": "directory", "path": d, "oid": _sha(d.encode())[:40]})
            if recursive or len(segs) == 1:
                out.append(self._file_entry(p, tree[p]))
        return out

    @staticmethod
    def _file_entry(p: str, data: bytes) -> dict:
        return {"type": "file", "path": p, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}

    def _api(self, method: str, parts: list[str], query: dict) -> None:
        if parts[:2] == ["repos", "create"] and method == "POST":
            body = json.loads(self._body() or b"{}")
            repo_type = body.get("type") or "model"
            repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            if (repo_type, repo_id) in self.hub.repos:  # the hub's 409 names the repo's URL too
                return self._json({"error": "You already created this repo", "url": f"{self.hub.url}/{prefix}{repo_id}"},
                                  409)
            self.hub.commit(repo_id, {".gitattributes": b""}, repo_type)
            return self._json({"url": f"{self.hub.url}/{prefix}{repo_id}", "name": repo_id})
        if parts[:1] == ["validate-yaml"] and method == "POST":  # README metadata check before a commit
            self._body()
            return self._json({"errors": [], "warnings": []})
        if not parts or parts[0] not in ("models", "datasets", "spaces"):
            return self._error(404, "NotFound", "unknown API route")
        repo_type, repo_id, rest = _split_repo(parts)
        action = rest[0] if rest else "revision"
        rev = rest[1] if len(rest) > 1 else "main"
        sha, tree, err = self.hub._resolve(repo_type, repo_id, rev)
        if sha is None:
            return self._error(404 if err == "RevisionNotFound" else 401, err, f"{repo_id}@{rev}: {err}")
        if action == "revision" and method == "GET":
            return self._json({"id": repo_id, "_id": repo_id, "sha": sha, "private": False, "disabled": False,
                               "gated": False, "downloads": 0, "likes": 0, "tags": [], "cardData": {},
                               "lastModified": "2026-01-01T00:00:00.000Z",
                               "siblings": [{"rfilename": p, "size": len(b)} for p, b in sorted(tree.items())]})
        if action == "tree" and method == "GET":
            prefix = "/".join(rest[2:])
            if prefix and prefix not in tree and not any(p.startswith(prefix + "/") for p in tree):
                return self._error(404, "EntryNotFound", f"{prefix} not in {repo_id}")
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._json(self._entries(tree, prefix, recursive))
        if action == "paths-info" and method == "POST":
            raw = self._body()
            ctype = self.headers.get("Content-Type", "")
            paths = json.loads(raw).get("paths", []) if "json" in ctype else parse_qs(raw.decode()).get("paths", [])
            paths = [paths] if isinstance(paths, str) else paths
            out = []
            for p in paths:
                p = p.strip("/")
                if p in tree:
                    out.append(self._file_entry(p, tree[p]))
                elif p == "" or any(q.startswith(p + "/") for q in tree):
                    out.append({"type": "directory", "path": p, "oid": _sha(p.encode())[:40]})
            return self._json(out)
        if action == "preupload" and method == "POST":
            files = json.loads(self._body()).get("files", [])
            return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                         for f in files]})
        if action == "commit" and method == "POST":
            files, deleted = {}, []
            for line in self._body().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    v = item["value"]
                    files[v["path"]] = base64.b64decode(v["content"]) if v.get("encoding") == "base64" \
                        else v["content"].encode()
                elif item["key"] in ("deletedFile", "deletedFolder"):
                    deleted.append(item["value"]["path"])
                elif item["key"] == "lfsFile":
                    return self._error(400, "BadRequest", "this stand-in takes regular files only")
            new = self.hub.commit(repo_id, files, repo_type, branch=unquote(rev), deleted=tuple(deleted))
            prefix = "" if repo_type == "model" else f"{repo_type}s/"
            return self._json({"commitUrl": f"{self.hub.url}/{prefix}{repo_id}/commit/{new}", "commitOid": new,
                               "success": True, "pullRequestUrl": None})
        self._error(404, "NotFound", f"unknown API action {action!r}")
