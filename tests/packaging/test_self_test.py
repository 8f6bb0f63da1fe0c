"""`tandem --self-test` (app/self_test.py): the verdict logic, the launcher dispatch,
one-line failures, then the real default pair (slow) and the whole package (slowest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from app import launcher, self_test
from tests.packaging.helpers import ROOT


def test_identical_streams_pass():
    assert self_test.compare([1, 2, 3], [1, 2, 3], [5.0, 5.0, 5.0]).startswith("identical: 3 tokens")


def test_a_difference_after_a_near_tie_is_accepted():
    verdict = self_test.compare([1, 2, 9, 9], [1, 2, 3, 4], [4.0, 3.0, 0.4, 2.0])
    assert "up to token 2" in verdict and "margin 0.400" in verdict


def test_a_difference_where_plain_decoding_was_confident_fails():
    with pytest.raises(self_test.SelfTestError, match="changed the greedy reply at token 1"):
        self_test.compare([1, 7, 3], [1, 2, 3], [4.0, 3.0, 0.1])


def test_an_empty_or_shorter_reply_without_margin_fails():
    with pytest.raises(self_test.SelfTestError, match="empty"):
        self_test.compare([], [1], [1.0])
    with pytest.raises(self_test.SelfTestError, match="differ in length"):
        self_test.compare([1, 2, 3], [1, 2], [4.0, 4.0])


def test_the_launcher_dispatches_self_test_before_the_gui(monkeypatch):
    seen = []
    monkeypatch.setattr(self_test, "main", lambda argv: seen.append(argv) or 0)
    assert launcher.main(["--self-test", "--no-gui"]) == 0
    assert seen == [["--no-gui"]]


def test_a_missing_model_fails_with_one_line(tmp_path, capsys):
    code = self_test.main(["--target", str(tmp_path / "missing.gguf"), "--no-gui", "--no-server"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert lines[-1].startswith("self-test: FAILED: ") and "missing.gguf" in lines[-1]


def test_seconds_since_process_start_is_plausible():
    since = self_test.seconds_since_process_start()
    if sys.platform.startswith("linux"):
        assert since is not None and 0 < since < 24 * 3600


def _offscreen_env() -> dict[str, str]:
    return dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))


@pytest.mark.slow
@pytest.mark.models
def test_self_test_passes_with_the_real_default_pair(tmp_path, default_pair):
    """The whole self-test as the packaged program runs it, from source: models, both
    replies, the engine process and the offscreen Qt check."""
    report = tmp_path / "self-test.json"
    out = subprocess.run(
        [sys.executable, "-m", "app.launcher", "--self-test", "--json", str(report)],
        cwd=ROOT, env=_offscreen_env(), capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "self-test: OK"
    result = json.loads(report.read_text())
    assert result["target"] == str(default_pair[0]) and result["draft"] == str(default_pair[1])
    assert result["verdict"].startswith("identical")
    assert result["first_token_s"] > 0 and result["gui"]["platform"] == "offscreen"


@pytest.mark.slow
@pytest.mark.models
@pytest.mark.package
def test_package_builds_and_passes_its_self_test(tmp_path, default_pair):
    """`packaging/build.py` end to end: PyInstaller, layout, tarball, packaged --self-test.
    Bundles the venv's llama.cpp (`--llama venv`): the portable build `make package`
    uses would add a second 5-8 minute llama.cpp compile to every CI run.  Uses the
    real cache dir so the packaged self-test keeps its measured decode costs there.
    Data dir and package folder stay scratch."""
    dist = tmp_path / "dist"
    env = _offscreen_env()
    env.pop("TANDEM_CACHE_DIR", None)
    out = subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py"), "--dist", str(dist),
                          "--llama", "venv"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((dist / "package-report.json").read_text())
    assert report["verdict"].startswith("identical") and report["gui_checked"]
    assert report["folder_bytes"] < 300e6 and report["archive_bytes"] < 120e6
    with tarfile.open(report["archive"]) as tar:
        names = tar.getnames()
    top = names[0].split("/")[0]
    for expected in ("tandem", "_internal/llama_cpp/lib/libllama.so", "install-desktop-entry.sh",
                     "share/applications/io.github.tandem.Tandem.desktop",
                     "share/metainfo/io.github.tandem.Tandem.metainfo.xml",
                     "share/icons/hicolor/256x256/apps/io.github.tandem.Tandem.png"):
        assert f"{top}/{expected}" in names
    assert not [n for n in names if n.endswith(".gguf") or "/PySide6/Qt/translations/" in n]
