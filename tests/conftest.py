"""Fixtures shared by the whole suite.

Tests never touch the user's real data: TANDEM_DATA_DIR and TANDEM_CACHE_DIR
point into a per-session temporary directory.  The big models are the exception
(TANDEM_MODELS_DIR is left alone): `make test` provisions them once into the
user data directory, and model tests find them through the catalog.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.tiny_gguf import write_tiny_gguf

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _real_models_dir() -> Path:
    from engine.models import paths
    return paths.models_dir()


@pytest.fixture(scope="session", autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    models = os.environ.get("TANDEM_MODELS_DIR") or str(_real_models_dir())
    base = tmp_path_factory.mktemp("tandem-home")
    os.environ["TANDEM_DATA_DIR"] = str(base / "data")
    os.environ["TANDEM_CACHE_DIR"] = str(base / "cache")
    os.environ["TANDEM_MODELS_DIR"] = models


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def _model_path(model_id: str) -> Path:
    from engine.models import provision
    path = provision.local_path(model_id)
    if path is None:
        pytest.fail(f"model {model_id} is not provisioned; `make test` pulls it (tandem models pull {model_id})")
    return path


@pytest.fixture(scope="session")
def default_pair() -> tuple[Path, Path]:
    from engine.models import catalog
    pair = catalog.default_pair()
    return _model_path(pair.target), _model_path(pair.draft)


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    return _model_path("smollm2-135m-instruct-q4_1")


@pytest.fixture(scope="session")
def qwen_engine(default_pair: tuple[Path, Path]):
    """One loaded default pair for all model tests (loading costs seconds)."""
    from engine.runtime.session import Engine
    from engine.settings import LoadSettings

    engine = Engine(LoadSettings(str(default_pair[0]), str(default_pair[1]), n_ctx=4096))
    yield engine
    engine.close()
