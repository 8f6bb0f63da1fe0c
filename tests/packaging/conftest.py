from __future__ import annotations

from types import ModuleType

import pytest

from tests.packaging.helpers import load


@pytest.fixture(scope="session")
def cfg() -> ModuleType:
    return load("bundle_config.py")
