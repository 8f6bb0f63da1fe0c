"""Issue 12 item 1: on a fresh Debian/Ubuntu desktop Qt's xcb plugin could not load
(libxcb-icccm4 and libxcb-keysyms1 missing) and nothing said so.  The set-up
(scripts/bootstrap.py run) and `tandem --self-test` now read `ldd` on the plugin.
These tests feed them the ldd output of such a machine."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from app import self_test, xcb_check

ROOT = Path(__file__).resolve().parents[2]

# ldd on PySide6's libqxcb.so on a Debian 12 desktop without the two packages (abridged)
FRESH_DEBIAN_LDD = """\
\tlinux-vdso.so.1 (0x00007ffd2a1f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f3c1c6a4000)
\tlibQt6Gui.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6Gui.so.6 (0x00007f3c1bc00000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f3c1c69a000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f3c1c692000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibfoo-bar2.so.3 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3c1ba1f000)
"""
PLUGIN = Path("/venv/PySide6/Qt/plugins/platforms/libqxcb.so")


def fresh_report() -> xcb_check.XcbReport:
    return xcb_check.check(PLUGIN, ldd=lambda _p: FRESH_DEBIAN_LDD)


def test_ldd_not_found_lines_become_the_missing_libraries() -> None:
    report = fresh_report()
    assert report.missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libfoo-bar2.so.3"]
    assert not report.ok
    assert xcb_check.check(PLUGIN, ldd=lambda _p: "\tlibc.so.6 => /lib/libc.so.6 (0x1)\n").ok


def test_missing_libraries_map_to_debian_packages_and_one_apt_command() -> None:
    packages = xcb_check.packages_for(fresh_report().missing)
    # known sonames by table; an unknown one by Debian's naming rule (name ends in a digit: dash)
    assert packages == ["libxcb-icccm4", "libxcb-keysyms1", "libfoo-bar2-3"]
    assert xcb_check.apt_command(packages, root=True) == [
        "apt-get", "install", "-y", "--no-install-recommends", "libxcb-icccm4", "libxcb-keysyms1", "libfoo-bar2-3"]
    assert xcb_check.apt_command(packages, root=False)[:3] == ["sudo", "-n", "apt-get"]
    assert xcb_check.shell_line(packages) == "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1 libfoo-bar2-3"
    # Ubuntu 24.04 renamed some library packages (64-bit time_t): use the name apt knows
    assert xcb_check.package_for("libglib-2.0.so.0", exists=lambda p: p == "libglib2.0-0t64") == "libglib2.0-0t64"
    assert xcb_check.package_for("libxcb-icccm.so.4", exists=lambda p: True) == "libxcb-icccm4"


def test_the_readme_lists_every_package_the_plugin_may_need() -> None:
    readme = (ROOT / "README.md").read_text()
    listed = set(readme.split("sudo apt-get install -y libxcb1", 1)[1].split("```", 1)[0].split()) | {"libxcb1"}
    assert set(xcb_check.DESKTOP_PACKAGES) <= listed


def test_the_check_runs_only_where_a_window_would_use_x11() -> None:
    assert xcb_check.needs_check({"DISPLAY": ":0"}, "linux")
    assert xcb_check.needs_check({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not xcb_check.needs_check({}, "linux")
    assert not xcb_check.needs_check({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not xcb_check.needs_check({"DISPLAY": ":0"}, "darwin")
    assert not xcb_check.needs_check({"DISPLAY": ":0"}, "win32")


def test_the_installed_pyside_plugin_is_found_without_loading_qt() -> None:
    plugin = xcb_check.find_plugin()
    assert plugin is not None and plugin.name == "libqxcb.so" and plugin.is_file()


# ------------------------------------------------------------------ the set-up


@pytest.fixture()
def bootstrap(monkeypatch):
    spec = importlib.util.spec_from_file_location("tandem_bootstrap", ROOT / "scripts" / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr(xcb_check, "apt_has", lambda p: True)
    return module


class FakeMachine:
    """ldd shows the two libraries missing until apt-get has installed their packages."""

    def __init__(self) -> None:
        self.installed: set[str] = set()
        self.commands: list[list[str]] = []

    def ldd(self, _plugin: Path) -> str:
        lines = FRESH_DEBIAN_LDD.replace("\tlibfoo-bar2.so.3 => not found\n", "").splitlines()
        gone = {"libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-keysyms.so.1": "libxcb-keysyms1"}
        return "\n".join(ln for ln in lines
                         if not any(ln.strip().startswith(s) and p in self.installed for s, p in gone.items()))

    def run(self, cmd, **_kw):
        self.commands.append(list(cmd))
        if "install" in cmd:
            self.installed.update(c for c in cmd if c.startswith("lib"))
        return subprocess.CompletedProcess(cmd, 0, b"", b"")


def test_setup_installs_the_missing_packages_as_root_then_checks_again(bootstrap, monkeypatch) -> None:
    machine = FakeMachine()
    monkeypatch.setattr(xcb_check, "run_ldd", machine.ldd)
    monkeypatch.setattr(xcb_check, "check", lambda plugin=None, ldd=None: xcb_check.XcbReport(
        PLUGIN, xcb_check.parse_missing(machine.ldd(PLUGIN))))
    monkeypatch.setattr(bootstrap.subprocess, "run", machine.run)
    monkeypatch.setattr(bootstrap.os, "geteuid", lambda: 0)
    bootstrap.ensure_display_libs()
    assert machine.commands == [
        ["apt-get", "install", "-y", "--no-install-recommends", "libxcb-icccm4", "libxcb-keysyms1"]]
    assert machine.installed == {"libxcb-icccm4", "libxcb-keysyms1"}


def test_setup_without_root_or_sudo_prints_the_command_and_stops(bootstrap, monkeypatch) -> None:
    machine = FakeMachine()
    monkeypatch.setattr(xcb_check, "check", lambda plugin=None, ldd=None: xcb_check.XcbReport(
        PLUGIN, xcb_check.parse_missing(machine.ldd(PLUGIN))))

    def run(cmd, **_kw):  # sudo asks for a password: `sudo -n true` fails
        machine.commands.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 1, b"", b"sudo: a password is required")

    monkeypatch.setattr(bootstrap.subprocess, "run", run)
    monkeypatch.setattr(bootstrap.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(bootstrap.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(SystemExit) as stop:
        bootstrap.ensure_display_libs()
    message = str(stop.value)
    assert "libxcb-icccm.so.4, libxcb-keysyms.so.1" in message
    assert "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1" in message
    assert machine.commands == [["sudo", "-n", "true"]]  # nothing was installed


def test_setup_checks_nothing_without_a_display(bootstrap, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(xcb_check, "check", lambda *a, **k: pytest.fail("checked without a display"))
    bootstrap.ensure_display_libs()


# ------------------------------------------------------------------ the packaged self-test


def test_self_test_fails_on_a_missing_xcb_library_when_a_display_is_set() -> None:
    with pytest.raises(self_test.SelfTestError) as failed:
        self_test.check_xcb(env={"DISPLAY": ":0"}, report=fresh_report())
    assert "libxcb-icccm.so.4" in str(failed.value)
    assert "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1" in str(failed.value)


def test_self_test_only_warns_without_a_display(capsys) -> None:
    result = self_test.check_xcb(env={}, report=fresh_report())
    assert result["missing"][:2] == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert "warning" in capsys.readouterr().out


def test_self_test_main_reports_the_failure_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setattr(self_test, "check_engine", lambda args: {})
    report = fresh_report()
    monkeypatch.setattr(xcb_check, "check", lambda *a, **k: report)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    assert self_test.main(["--no-server"]) == 1
    out = capsys.readouterr().out
    assert "self-test: FAILED: Qt's xcb platform plugin cannot load" in out
