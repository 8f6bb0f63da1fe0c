"""Dropping a plugin also drops the libraries only it needed, and no link dangles."""

from __future__ import annotations

from tests.packaging.helpers import load

prune = load("prune.py")

# a tiny dependency graph: source path -> libraries it loads (name, resolved path)
GRAPH = {
    "/src/gtk3theme.so": [("libgtk-3.so.0", "/sys/libgtk-3.so.0"), ("libQt6Gui.so.6", "/src/libQt6Gui.so.6")],
    "/sys/libgtk-3.so.0": [("libcairo.so.2", "/sys/libcairo.so.2"), ("libglib-2.0.so.0", "/sys/libglib-2.0.so.0")],
    "/sys/libcairo.so.2": [("libpixman-1.so.0", "/sys/libpixman-1.so.0")],
    "/src/QtGui.abi3.so": [("libQt6Gui.so.6", "/src/libQt6Gui.so.6")],
    "/src/libQt6Gui.so.6": [("libglib-2.0.so.0", "/sys/libglib-2.0.so.0")],
}


def imports(path: str) -> list[tuple[str, str | None]]:
    return GRAPH.get(path, [])


def test_closure_follows_dependencies_transitively():
    assert prune.closure(["/src/gtk3theme.so"], imports) == {
        "libgtk-3.so.0", "libQt6Gui.so.6", "libcairo.so.2", "libglib-2.0.so.0", "libpixman-1.so.0",
    }


def test_orphans_are_needed_only_by_what_was_dropped():
    kept = {
        "PySide6/QtGui.abi3.so": "/src/QtGui.abi3.so",
        "PySide6/Qt/lib/libQt6Gui.so.6": "/src/libQt6Gui.so.6",
        "libgtk-3.so.0": "/sys/libgtk-3.so.0",
        "libcairo.so.2": "/sys/libcairo.so.2",
        "libpixman-1.so.0": "/sys/libpixman-1.so.0",
        "libglib-2.0.so.0": "/sys/libglib-2.0.so.0",  # Qt needs it too: stays
    }
    assert prune.orphans(kept, ["/src/gtk3theme.so"], imports) == {"libgtk-3.so.0", "libcairo.so.2", "libpixman-1.so.0"}


def test_nothing_is_orphaned_when_nothing_is_dropped():
    kept = {"libcairo.so.2": "/sys/libcairo.so.2"}
    assert prune.orphans(kept, [], imports) == set()


def test_symlinks_to_removed_files_are_found():
    entries = [
        ("libQt6Network.so.6", "PySide6/Qt/lib/libQt6Network.so.6", "SYMLINK"),
        ("libQt6Gui.so.6", "PySide6/Qt/lib/libQt6Gui.so.6", "SYMLINK"),
        ("llama_cpp/lib/alias.so", "libggml.so.0", "SYMLINK"),
        ("PySide6/Qt/lib/libQt6Network.so.6", "/src/libQt6Network.so.6", "BINARY"),
    ]
    removed = {"PySide6/Qt/lib/libQt6Network.so.6", "llama_cpp/lib/libggml.so.0"}
    assert prune.dangling(entries, removed) == {"libQt6Network.so.6", "llama_cpp/lib/alias.so"}
