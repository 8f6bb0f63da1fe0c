"""Where Tandem keeps things on the user's machine (never inside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "tandem"


def data_dir() -> Path:
    """Chats, models and learned per-pair state.  TANDEM_DATA_DIR overrides (tests)."""
    path = Path(os.environ.get("TANDEM_DATA_DIR") or platformdirs.user_data_dir(APP, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Model files.  TANDEM_MODELS_DIR overrides, so tests with a scratch data dir
    can still share the big models."""
    env = os.environ.get("TANDEM_MODELS_DIR")
    path = Path(env) if env else data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Re-creatable things: measured decode costs, downloaded chunk packages."""
    path = Path(os.environ.get("TANDEM_CACHE_DIR") or platformdirs.user_cache_dir(APP, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
