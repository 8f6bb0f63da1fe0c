"""The desktop metadata: .desktop entry, AppStream metainfo, icons at the sizes named."""

from __future__ import annotations

import configparser
import shutil
import struct
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.packaging.helpers import ROOT


@pytest.fixture(scope="module")
def desktop(cfg) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(cfg.DESKTOP_DIR / f"{cfg.APP_ID}.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


@pytest.fixture(scope="module")
def metainfo(cfg) -> ET.Element:
    return ET.parse(cfg.DESKTOP_DIR / f"{cfg.APP_ID}.metainfo.xml").getroot()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_desktop_entry_has_the_keys_launchers_need(desktop, cfg):
    assert desktop["Type"] == "Application"
    assert desktop["Name"] == cfg.APP_NAME
    assert desktop["Exec"].split()[0] == cfg.EXE_NAME
    assert desktop["Icon"] == cfg.APP_ID  # a theme icon name, not a path
    assert desktop["Terminal"] == "false"
    assert desktop["Categories"].endswith(";") and desktop["Comment"]
    assert desktop["StartupWMClass"] == cfg.APP_NAME


def test_icons_exist_at_every_size_the_theme_is_asked_for(desktop, cfg):
    hicolor = cfg.DESKTOP_DIR / "icons" / "hicolor"
    for n in cfg.PNG_SIZES:
        assert png_size(hicolor / f"{n}x{n}" / "apps" / f"{desktop['Icon']}.png") == (n, n)
    svg = ET.parse(hicolor / "scalable" / "apps" / f"{desktop['Icon']}.svg").getroot()
    assert svg.tag.endswith("svg")
    assert (hicolor / "scalable" / "apps" / f"{cfg.APP_ID}.svg").read_bytes() == (
        cfg.DESKTOP_DIR / f"{cfg.APP_ID}.svg"
    ).read_bytes(), "rerun packaging/make_icons.py after editing the SVG"


def test_windows_and_macos_icons_hold_the_expected_sizes(cfg):
    ico = (cfg.DESKTOP_DIR / "tandem.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind, count) == (0, 1, len(cfg.ICO_SIZES))
    widths = sorted(ico[6 + 16 * i] or 256 for i in range(count))
    assert widths == sorted(cfg.ICO_SIZES)
    icns = (cfg.DESKTOP_DIR / "tandem.icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)
    pos, kinds = 8, []
    while pos < len(icns):
        kinds.append(icns[pos : pos + 4].decode())
        pos += struct.unpack(">I", icns[pos + 4 : pos + 8])[0]
    assert kinds == list(cfg.ICNS_TYPES)


def test_metainfo_has_the_required_appstream_fields(metainfo, cfg):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert metainfo.tag == "component" and metainfo.get("type") == "desktop-application"
    assert metainfo.findtext("id") == cfg.APP_ID
    assert metainfo.findtext("metadata_license") == "CC0-1.0"
    assert metainfo.findtext("project_license") == project["license"]["text"]
    assert metainfo.findtext("name") == cfg.APP_NAME
    assert metainfo.findtext("summary")
    assert metainfo.find("description/p") is not None
    launchable = metainfo.find("launchable")
    assert launchable is not None and launchable.get("type") == "desktop-id"
    assert launchable.text == f"{cfg.APP_ID}.desktop" and (cfg.DESKTOP_DIR / launchable.text).exists()
    assert metainfo.find("content_rating") is not None
    assert project["version"] in [r.get("version") for r in metainfo.iter("release")]
    assert metainfo.findtext("provides/binary") == cfg.EXE_NAME


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstreamcli not installed")
def test_appstreamcli_accepts_the_metainfo(cfg):
    out = subprocess.run(["appstreamcli", "validate", "--no-net", str(cfg.DESKTOP_DIR / f"{cfg.APP_ID}.metainfo.xml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_desktop_file_validate_accepts_the_entry(cfg):
    out = subprocess.run(["desktop-file-validate", str(cfg.DESKTOP_DIR / f"{cfg.APP_ID}.desktop")],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "error" not in out.stdout, out.stdout + out.stderr


def test_install_script_points_the_entry_at_the_unpacked_folder(tmp_path, cfg):
    """install-desktop-entry.sh run from a fake unpacked package, into a fake XDG_DATA_HOME."""
    pkg = tmp_path / "Tandem folder"
    (pkg / "share" / "applications").mkdir(parents=True)
    (pkg / "share" / "metainfo").mkdir(parents=True)
    shutil.copy(cfg.DESKTOP_DIR / f"{cfg.APP_ID}.desktop", pkg / "share" / "applications")
    shutil.copy(cfg.DESKTOP_DIR / f"{cfg.APP_ID}.metainfo.xml", pkg / "share" / "metainfo")
    shutil.copytree(cfg.DESKTOP_DIR / "icons", pkg / "share" / "icons")
    script = shutil.copy(ROOT / "packaging" / "linux" / "install-desktop-entry.sh", pkg)
    data = tmp_path / "xdg"
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(data), "PATH": "/usr/bin:/bin"}
    subprocess.run(["sh", script], env=env, check=True, capture_output=True)
    entry = (data / "applications" / f"{cfg.APP_ID}.desktop").read_text()
    assert f'Exec="{pkg}/tandem"' in entry and f"TryExec={pkg}/tandem" in entry
    assert (data / "icons" / "hicolor" / "48x48" / "apps" / f"{cfg.APP_ID}.png").exists()
    subprocess.run(["sh", script, "--uninstall"], env=env, check=True, capture_output=True)
    assert not (data / "applications" / f"{cfg.APP_ID}.desktop").exists()
    assert not list((data / "icons").rglob(f"{cfg.APP_ID}.*"))
