"""Huge pages for the weights (engine/llama/hugepages.py): when the tunable applies,
how it is passed to processes that decode, and the one-time re-exec of the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.llama import hugepages

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("text", "mode"), [
    ("always [madvise] never\n", "madvise"), ("[always] madvise never\n", "always"),
    ("always madvise [never]\n", "never"), ("garbage\n", None),
])
def test_the_kernel_policy_is_read_from_sysfs(tmp_path, monkeypatch, text, mode) -> None:
    f = tmp_path / "enabled"
    f.write_text(text)
    monkeypatch.setattr(hugepages, "THP_ENABLED", f)
    assert hugepages.thp_mode() == mode
    monkeypatch.setattr(hugepages, "THP_ENABLED", tmp_path / "absent")
    assert hugepages.thp_mode() is None


def test_the_tunable_joins_other_tunables_once() -> None:
    env = hugepages.with_tunable({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "X": "1"})
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{hugepages.TUNABLE}" and env["X"] == "1"
    assert hugepages.with_tunable(env) == env
    assert hugepages.with_tunable({})["GLIBC_TUNABLES"] == hugepages.TUNABLE
    assert hugepages.merged(None) == hugepages.TUNABLE  # the app's QProcessEnvironment gives "" or a value
    assert hugepages.merged(f"{hugepages.TUNABLE}:a=1") == f"{hugepages.TUNABLE}:a=1"


def test_child_processes_get_it_only_where_it_applies(monkeypatch) -> None:
    monkeypatch.setattr(hugepages, "applies", lambda: True)
    assert hugepages.in_effect(hugepages.child_env({"A": "b"}))
    monkeypatch.setattr(hugepages, "applies", lambda: False)
    assert hugepages.child_env({"A": "b"}) == {"A": "b"}


def test_it_never_applies_when_turned_off_or_without_madvise(monkeypatch) -> None:
    monkeypatch.setattr(hugepages, "thp_mode", lambda: "madvise")
    monkeypatch.setenv("TANDEM_HUGEPAGES", "0")
    assert not hugepages.applies() and "TANDEM_HUGEPAGES=0" in hugepages.status()
    monkeypatch.delenv("TANDEM_HUGEPAGES")
    for mode in ("always", "never", None):
        monkeypatch.setattr(hugepages, "thp_mode", lambda m=mode: m)
        assert not hugepages.applies()


def test_the_process_restarts_once_with_the_tunable() -> None:
    """The re-exec keeps the command line and happens exactly once (the restarted
    process finds the tunable set)."""
    code = ("import os, sys\n"
            "from engine.llama import hugepages as h\n"
            "h.applies = lambda: True\n"
            "print('start', flush=True)\n"
            "h.reexec_with_huge_pages()\n"
            "print(os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])\n")
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code, "arg"], capture_output=True, text=True, env=env,
                         timeout=60, check=True).stdout.splitlines()
    assert out == ["start", "start", f"{hugepages.TUNABLE} ['arg']"]
