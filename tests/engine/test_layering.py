"""The engine's packages depend on each other one way only (README, Layout).

Read from the sources with `ast`, so a new import that breaks the rule fails here
rather than as an import circle somewhere later."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"

# Shared leaves: plain data and switches, importable from everywhere.
LEAVES = {"errors", "settings", "faults"}
# What each package may import besides itself and the leaves.
ALLOWED = {
    "llama": set(),
    "models": {"llama"},
    "decoding": {"llama"},
    "drafters": {"llama", "decoding"},
    # the HTTP API knows events and settings only; whoever owns the engine hands it a Backend
    "api": {"decoding"},
    "runtime": {"llama", "models", "decoding", "drafters", "api"},
    "bench": {"llama", "models", "decoding", "drafters", "api", "runtime"},
    "cli": {"llama", "models", "decoding", "drafters", "api", "runtime", "bench"},
}


def engine_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("engine"):
            parts = node.module.split(".")
            if len(parts) == 1:
                found |= {alias.name for alias in node.names}
            else:
                found.add(parts[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("engine.")}
    return found


def package_of(path: Path) -> str:
    rel = path.relative_to(ENGINE).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def test_every_engine_module_is_in_a_known_place():
    top = {package_of(p) for p in ENGINE.rglob("*.py")}
    assert top <= set(ALLOWED) | LEAVES | {"__init__"}, top - set(ALLOWED) - LEAVES


def test_dependencies_point_one_way():
    wrong = []
    for path in sorted(ENGINE.rglob("*.py")):
        pkg = package_of(path)
        if pkg == "__init__":
            continue
        allowed = (ALLOWED.get(pkg, set()) if pkg not in LEAVES else set()) | LEAVES | {pkg}
        for target in engine_imports(path) - allowed:
            wrong.append(f"{path.relative_to(ROOT)} imports engine.{target}")
    assert not wrong, "\n".join(wrong)


def test_leaves_import_only_leaves():
    for name in LEAVES:
        assert engine_imports(ENGINE / f"{name}.py") <= LEAVES
