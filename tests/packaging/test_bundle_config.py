"""What goes into the package: Qt modules, excludes, dropped files, llama.cpp libraries,
data files.  Fast: reads source and metadata, builds nothing."""

from __future__ import annotations

import ast
import platform
import re
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.packaging.helpers import ROOT, load

RUNTIME_SOURCES = [
    p for p in [*(ROOT / "app").rglob("*.py"), *(ROOT / "engine").rglob("*.py")]
    if "bench" not in p.relative_to(ROOT).parts and p.relative_to(ROOT).as_posix() != "engine/cli/bench.py"
]


def qt_modules_imported(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r"PySide6\.(Qt\w+)", text))
        for names in re.findall(r"from PySide6 import ([\w, ()\n]+)", text):
            found |= {n for n in re.findall(r"\w+", names) if n.startswith("Qt")}
    return found


def module_level_imports(path: Path) -> set[str]:
    """Top-level package names imported when the module loads (not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_app_imports_only_the_qt_modules_the_package_keeps(cfg):
    used = qt_modules_imported(RUNTIME_SOURCES)
    assert used, "no PySide6 import found: did app/ move?"
    extra = used - set(cfg.QT_KEEP)
    assert not extra, f"app/ now imports {sorted(extra)}: add them to QT_KEEP in packaging/bundle_config.py"


def test_every_installed_pyside6_module_is_known(cfg):
    """A new PySide6 module must be listed, or it would be bundled by default."""
    spec = find_spec("PySide6")
    assert spec is not None and spec.origin is not None
    files = Path(spec.origin).parent.iterdir()
    installed = {p.name.split(".")[0] for p in files if re.match(r"Qt\w+\.(pyi|abi3)", p.name)}
    assert installed - set(cfg.QT_MODULES) == set()


def test_unused_qt_and_dev_tools_are_excluded(cfg):
    excluded = set(cfg.excludes())
    for module in ("QtWebEngineCore", "Qt3DCore", "QtMultimedia", "QtQml", "QtQuick", "QtCharts", "QtNetwork"):
        assert f"PySide6.{module}" in excluded
    for module in cfg.QT_KEEP:
        assert f"PySide6.{module}" not in excluded
    for module in ("pytest", "hypothesis", "matplotlib", "scipy", "tkinter", "pip", "llama_cpp.server", "engine.bench"):
        assert module in excluded


def test_no_runtime_module_imports_an_excluded_package_at_load_time(cfg):
    """An excluded package imported at module level would break the frozen program."""
    excluded = set(cfg.PY_EXCLUDES)
    offenders = []
    for path in RUNTIME_SOURCES:
        for name in module_level_imports(path):
            if any(name == x or name.startswith(x + ".") for x in excluded):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


@pytest.mark.parametrize(
    ("dest", "kept"),
    [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", True),
        ("PySide6/Qt/plugins/platforms/libqoffscreen.so", True),
        ("PySide6/Qt/plugins/imageformats/libqsvg.so", True),
        ("PySide6/Qt/plugins/iconengines/libqsvgicon.so", True),
        ("PySide6/Qt/lib/libQt6Widgets.so.6", True),
        ("llama_cpp/lib/libllama.so", True),
        ("assets/models.json", True),
        ("PySide6/Qt/translations/qtbase_de.qm", False),
        ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", False),
        ("PySide6/Qt/plugins/platforms/libqvnc.so", False),
        ("PySide6/Qt/plugins/imageformats/libqtiff.so", False),
        ("PySide6/Qt/lib/libQt6Network.so.6", False),
        ("numpy/_core/tests/test_api.py", False),
        ("PySide6/include/QtCore/qobject.h", False),
    ],
)
def test_files_dropped_after_analysis(cfg, dest, kept):
    assert cfg.keep(dest) is kept
    assert cfg.keep(dest.replace("/", "\\")) is kept  # Windows TOC names


def _fake_lib_dir(tmp_path: Path, names: list[str]) -> Path:
    for name in names:
        (tmp_path / name).write_bytes(b"\x7fELF")
    return tmp_path


def test_linux_llama_libraries_are_the_loaded_name_plus_sonames(cfg, tmp_path):
    names = [f"lib{base}.so{suffix}" for base in ("llama", "ggml", "ggml-base", "ggml-cpu", "mtmd")
             for suffix in ("", ".0", ".0.5.0")]
    picked = [p.name for p in cfg.llama_libraries(_fake_lib_dir(tmp_path, names), "linux")]
    assert picked == ["libllama.so", "libggml-base.so.0", "libggml-cpu.so.0", "libggml.so.0"]


def test_macos_and_windows_llama_libraries(cfg, tmp_path):
    mac = tmp_path / "mac"
    mac.mkdir()
    _fake_lib_dir(mac, ["libllama.dylib", "libggml.dylib", "libggml-metal.dylib", "libmtmd.dylib"])
    picked = [p.name for p in cfg.llama_libraries(mac, "darwin")]
    assert picked == ["libggml-metal.dylib", "libggml.dylib", "libllama.dylib"]
    win = tmp_path / "win"
    win.mkdir()
    _fake_lib_dir(win, ["llama.dll", "ggml.dll", "ggml-base.dll", "mtmd.dll", "llama.lib"])
    assert [p.name for p in cfg.llama_libraries(win, "win32")] == ["ggml-base.dll", "ggml.dll", "llama.dll"]


def test_missing_llama_library_is_a_clear_error(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"libllama\.so"):
        cfg.llama_libraries(_fake_lib_dir(tmp_path, ["libggml.so.0"]), "linux")


def test_installed_llama_libraries_satisfy_each_other(cfg):
    """Every library libllama needs from its own folder is among those bundled."""
    spec = find_spec("llama_cpp")
    assert spec is not None and spec.origin is not None
    lib_dir = Path(spec.origin).parent / "lib"
    picked = {p.name for p in cfg.llama_libraries(lib_dir, "linux")}
    local = {p.name for p in lib_dir.iterdir()}
    needed = {n for n in _needed(lib_dir / "libllama.so") if n in local}
    for name in list(needed):
        needed |= {n for n in _needed(lib_dir / name) if n in local}
    assert needed and needed <= picked


def _needed(path: Path) -> list[str]:
    """DT_NEEDED entries, through PyInstaller's own reader (ldd on Linux)."""
    bindepend = pytest.importorskip("PyInstaller.depend.bindepend")
    return [Path(name).name for name, _ in bindepend.get_imports(str(path))]


def test_data_files_exist_and_land_where_the_code_looks(cfg):
    from engine.models import catalog
    for src, _dest in cfg.DATAS:
        assert (ROOT / src).exists(), src
    # engine/models/catalog.py finds the catalog at <package root>/../assets/models.json; frozen,
    # the package root is the bundle folder, so the catalog must land in <bundle>/assets
    assert catalog.DEFAULT_PATH == ROOT / "assets" / "models.json"
    assert ("assets/models.json", "assets") in cfg.DATAS


def test_spec_and_build_script_parse():
    for name in ("tandem.spec", "build.py", "make_icons.py", "prune.py"):
        ast.parse((ROOT / "packaging" / name).read_text(encoding="utf-8"), filename=name)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 flags")
def test_portable_llama_flags_leave_out_this_machines_extras(monkeypatch):
    monkeypatch.delenv("TANDEM_PACKAGE_CMAKE_ARGS", raising=False)
    args = load("build.py").portable_cmake_args()
    assert args.startswith("-DGGML_NATIVE=OFF") and "-DGGML_AVX2=ON" in args and "-DGGML_FMA=ON" in args
    assert "AVX512" not in args and "AVX_VNNI" not in args
