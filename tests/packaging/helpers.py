"""Load the modules in packaging/ by path: that folder is deliberately not a Python
package (a `packaging/__init__.py` would shadow PyPI's `packaging`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
for _path in (PACKAGING,):  # bundle_config and prune import each other by name
    if str(_path) not in sys.path:
        sys.path.append(str(_path))


def load(relative: str) -> ModuleType:
    """Import packaging/<relative> under a private name."""
    path = PACKAGING / relative
    name = "tandem_packaging_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
