"""Hostile model files never reach llama.cpp (issue 6, item 3): whichever of the pair is
damaged or malicious, the engine refuses it with the header check's one-line message
before llama.cpp's own parser is called at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ModelFileError
from engine.llama import backend as llama_backend
from engine.runtime.session import Engine
from engine.settings import LoadSettings
from tests.helpers.hostile_gguf import hostile_files

HEADER_KINDS = ["evil-truncated", "evil-magic", "evil-tensor-count", "evil-dimensions", "evil-metadata"]


@pytest.fixture(scope="module")
def hostile(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    root = tmp_path_factory.mktemp("hostile")
    out = {}
    for name, (data, message) in hostile_files(tiny_gguf.read_bytes(), root / "canary").items():
        path = root / f"{name}.gguf"
        path.write_bytes(data)
        out[name] = (path, message)
    return out


def spy_on_llama_loads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Paths llama.cpp is asked to parse from now on."""
    opened: list[bytes] = []
    real_load = llama_backend.C.llama_model_load_from_file

    def spy(path: bytes, params: object) -> object:
        opened.append(path)
        return real_load(path, params)

    monkeypatch.setattr(llama_backend.C, "llama_model_load_from_file", spy)
    return opened


def test_the_spy_sees_a_good_load(tiny_gguf, monkeypatch) -> None:
    opened = spy_on_llama_loads(monkeypatch)
    Engine(LoadSettings(str(tiny_gguf), None, n_ctx=256, threads=1)).close()
    assert opened == [str(tiny_gguf).encode()]


@pytest.mark.parametrize("role", ["target", "draft"])
@pytest.mark.parametrize("kind", HEADER_KINDS)
def test_hostile_headers_never_reach_llama_cpp(tiny_gguf, hostile, monkeypatch, kind: str, role: str) -> None:
    opened = spy_on_llama_loads(monkeypatch)
    path, message = hostile[kind]
    load = LoadSettings(str(path), None) if role == "target" else LoadSettings(str(tiny_gguf), str(path))
    with pytest.raises(ModelFileError) as err:
        Engine(load, require_compatible_draft=False)  # as the engine process loads
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(path) in str(err.value)
    assert opened == []  # refused before llama.cpp saw either file
