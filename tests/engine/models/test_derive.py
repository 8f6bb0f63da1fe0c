"""Deriving a cheaper draft with llama.cpp's quantizer (engine/models/derive.py) and
installing it as a catalog model (provision's `derived` source): on the tiny test
GGUF (64-wide rows: Q4_0's and IQ4_NL's 32-element blocks fit) here, on the real
0.5B draft in test_derive_real.py."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from engine.errors import Cancelled, ChecksumError, ModelFileError
from engine.llama.backend import LlamaContext, LlamaModel
from engine.llama.lm import LlamaLM
from engine.models import catalog, provision
from engine.models.catalog import CatalogError
from engine.models.derive import VARIANTS, Recipe, derive
from tests.engine.decoding.test_greedy_equivalence import assert_equivalent
from tests.helpers.fake_hub import catalog_entry, write_catalog
from tests.helpers.tiny_gguf import write_tiny_gguf

Q4_0 = VARIANTS["q4_0"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tensor_types(path: Path) -> dict[str, str]:
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("src") / "tiny.gguf")


def leftovers(directory: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_has_its_types_loads_and_decodes(tiny, tmp_path, name):
    recipe = VARIANTS[name]
    out = derive(tiny, tmp_path / "out.gguf", recipe)
    types = tensor_types(out)
    assert types["token_embd.weight"] == recipe.embeddings
    assert types["output.weight"] == recipe.output
    assert types["blk.0.ffn_down.weight"] == recipe.blocks
    assert types["blk.1.attn_v.weight"] == recipe.blocks  # pure: no per-tensor exceptions
    assert types["blk.0.attn_norm.weight"] == "F32"  # 1-D tensors stay as they are
    model = LlamaModel(out)
    try:
        lm = LlamaLM(model, LlamaContext(model, n_ctx=128, n_threads=1))
        rows = lm.decode([1, 2, 3])
        assert rows.shape == (1, model.n_vocab) and np.isfinite(rows).all()
        lm.ctx.close()
    finally:
        model.close()
    assert leftovers(tmp_path, {"out.gguf"}) == []


def test_derivation_is_deterministic(tiny, tmp_path):
    a = derive(tiny, tmp_path / "a.gguf", Q4_0)
    b = derive(tiny, tmp_path / "b.gguf", Q4_0, threads=1)
    assert sha(a) == sha(b)
    c = derive(tiny, tmp_path / "c.gguf", VARIANTS["q4_0-q8out"])
    assert sha(c) != sha(a)


def test_cancel_before_start_writes_nothing(tiny, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        derive(tiny, tmp_path / "out.gguf", Q4_0, cancel=cancel)
    assert leftovers(tmp_path, set()) == []


def test_cancel_while_quantizing_removes_the_output(tiny, tmp_path, monkeypatch):
    cancel = threading.Event()
    real = llama_cpp.llama_model_quantize

    def quantize_then_cancel(*args):
        rc = real(*args)  # the file is complete on disk now, under its temporary name
        cancel.set()
        return rc

    monkeypatch.setattr(llama_cpp, "llama_model_quantize", quantize_then_cancel)
    with pytest.raises(Cancelled):
        derive(tiny, tmp_path / "out.gguf", Q4_0, cancel=cancel)
    assert leftovers(tmp_path, set()) == []


def test_failed_quantization_leaves_nothing_and_says_why(tmp_path):
    bogus = tmp_path / "src" / "not-a-model.gguf"
    bogus.parent.mkdir()
    bogus.write_bytes(b"GGUF" + b"\0" * 60)
    out_dir = tmp_path / "out"
    with pytest.raises(ModelFileError, match=r"could not quantize not-a-model\.gguf"):
        derive(bogus, out_dir / "out.gguf", Q4_0)
    assert leftovers(out_dir, set()) == []


def test_recipe_refuses_unknown_types():
    with pytest.raises(ValueError, match="unknown weight type"):
        Recipe("Q4_0", "Q3_X", "Q4_0")
    assert Recipe.from_dict(Q4_0.to_dict()) == Q4_0


# ---------------------------------------------------------------- as a catalog model


@pytest.fixture
def world(tmp_path, monkeypatch, tiny):
    """models_dir() holds the base model; the catalog records a derivation of it."""
    for name in ("data", "models", "cache"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(f"TANDEM_{name.upper()}_DIR", str(tmp_path / name))
    base = catalog_entry("base", tiny.read_bytes(), roles=("target", "draft"))
    (tmp_path / "models" / "base.gguf").write_bytes(tiny.read_bytes())
    expected = derive(tiny, tmp_path / "expected.gguf", Q4_0)

    def write(result_sha: str = sha(expected), base_sha: str | None = None, base_id: str = "base") -> None:
        derived = {
            "id": "base-fast", "name": "Base (fast)", "family": "tiny", "tokenizer": "tiny", "roles": ["draft"],
            "file": "base-fast.gguf", "size": expected.stat().st_size, "sha256": result_sha, "license": "MIT",
            "sources": [{"type": "derived", "from": base_id, "from_sha256": base_sha or base["sha256"],
                         "recipe": Q4_0.to_dict()}],
        }
        path = write_catalog(tmp_path / "catalog.json", [base, derived],
                             [{"id": "p", "target": "base", "draft": "base-fast", "default": True}])
        monkeypatch.setenv("TANDEM_CATALOG", str(path))

    write()
    return {"write": write, "models": tmp_path / "models", "expected": expected}


def test_pull_derives_verifies_and_installs(world):
    path = provision.pull("base-fast")
    assert path == world["models"] / "base-fast.gguf"
    assert sha(path) == sha(world["expected"])
    assert provision.verify("base-fast", rehash=True).ok
    assert leftovers(world["models"], {"base.gguf", "base-fast.gguf"}) == []
    assert provision.pull("base-fast") == path  # now simply present


def test_bytes_other_than_recorded_are_quarantined(world):
    world["write"](result_sha="0" * 64)
    with pytest.raises(ChecksumError, match=r"checksum mismatch for base-fast\.gguf"):
        provision.pull("base-fast")
    assert not (world["models"] / "base-fast.gguf").exists()
    assert (world["models"] / "quarantine" / "base-fast.gguf.bad").exists()


def test_cancelled_pull_leaves_nothing(world):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        provision.pull("base-fast", cancel=cancel)
    assert not (world["models"] / "base-fast.gguf").exists()
    partial = world["models"] / ".partial"
    assert not partial.exists() or leftovers(partial, set()) == []


def test_missing_base_says_what_to_pull(world):
    (world["models"] / "base.gguf").unlink()
    with pytest.raises(Exception, match="derived from base, which is not on this machine"):
        provision.pull("base-fast", sources=["local", "derived"])


def test_catalog_checks_the_derivation_record(world):
    world["write"](base_sha="1" * 64)
    with pytest.raises(CatalogError, match="records source sha256"):
        catalog.load()
    world["write"](base_id="nope")
    with pytest.raises(CatalogError, match="derived from unknown model 'nope'"):
        catalog.load()


# ---------------------------------------------------------------- CLI, bench offer, statistics


def test_optimize_draft_command_derives_measures_and_says_how_to_use_it(world, capsys):
    from engine.cli.main import main

    assert main(["models", "optimize-draft", "--from", "base", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "base-fast: ready and verified" in out
    assert "as shipped" in out and "optimized" in out and "x cheaper than as shipped" in out
    assert (world["models"] / "base-fast.gguf").is_file()


def test_bench_offers_the_optimized_draft_once(world):
    from engine.cli.models import optimize_offer

    base = str(world["models"] / "base.gguf")
    line = optimize_offer(base)
    assert line is not None and "tandem models optimize-draft" in line and "base-fast" in line
    assert optimize_offer(base) is None  # once
    assert optimize_offer(None) is None


def test_reply_statistics_name_the_draft_that_ran_and_output_equals_plain(world):
    from engine.runtime.session import Engine
    from engine.settings import GenerationSettings, LoadSettings, SpecSettings

    path = provision.pull("base-fast")
    engine = Engine(LoadSettings(target=str(world["models"] / "base.gguf"), draft=str(path), n_ctx=256, threads=1))
    try:
        messages = [{"role": "user", "content": "hello world"}]
        plain = engine.reply(messages, GenerationSettings(max_tokens=24, spec=SpecSettings(mode="off")),
                             record_margins=True)
        chain = engine.reply(messages, GenerationSettings(max_tokens=24, spec=SpecSettings(mode="chain", p_min=0.0)),
                             record_margins=True)
    finally:
        engine.close()
    snap = chain.stats.snapshot()
    assert snap["draft_model"] == "base-fast.gguf"
    assert snap["tested"].get("draft", 0) > 0
    assert_equivalent(plain, chain, "chain with the derived tiny draft")


def test_leftovers_of_a_killed_derivation_are_cleared_and_the_result_is_readable(tiny, tmp_path):
    stale = tmp_path / ".out.gguf.abc123.deriving"
    stale.write_bytes(b"half")
    out = derive(tiny, tmp_path / "out.gguf", Q4_0)
    assert not stale.exists()
    assert out.stat().st_mode & 0o044  # group/others may read it, as any model file
