"""Dropping a Qt plugin after PyInstaller's analysis leaves behind the libraries only
that plugin needed (the GTK3 theme alone brings GTK, cairo, pango, atk and friends from
the build machine).  `orphans` finds them, so the spec can drop them too.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from pathlib import Path

# get_imports(path) -> [(referenced name, resolved path or None)], as
# PyInstaller.depend.bindepend.get_imports returns them
GetImports = Callable[[str], Iterable[tuple[str, str | None]]]


def closure(paths: Iterable[str], get_imports: GetImports) -> set[str]:
    """Base names of every library the given binaries load, directly or not."""
    seen: set[str] = set()
    names: set[str] = set()
    todo = list(paths)
    while todo:
        path = todo.pop()
        for name, resolved in get_imports(path):
            names.add(Path(name).name)
            if resolved and resolved not in seen:
                seen.add(resolved)
                todo.append(resolved)
    return names


def orphans(kept: dict[str, str], dropped: Iterable[str], get_imports: GetImports) -> set[str]:
    """Bundle names (from `kept`: bundle name -> source path) of top-level libraries
    that only the dropped binaries (source paths) need."""
    candidates = {name for name in closure(dropped, get_imports) if name in kept and "/" not in name}
    roots = [src for name, src in kept.items() if name not in candidates]
    needed = closure(roots, get_imports)
    return {name for name in candidates if name not in needed}


def dangling(entries: Iterable[tuple[str, str, str]], removed: set[str]) -> set[str]:
    """Bundle names of SYMLINK entries (dest, link target, "SYMLINK") that would point at
    a removed file: PyInstaller links top-level library names to their package copies."""
    out = set()
    for dest, target, kind in entries:
        if kind == "SYMLINK":
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(dest), target.replace("\\", "/")))
            if resolved in removed:
                out.add(dest)
    return out
