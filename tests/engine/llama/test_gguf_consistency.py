"""Files whose header is well-formed but whose parts contradict each other (issue 17):
the vocabulary checks (gguf_vocab.py) and the hyper-parameter and tensor-shape checks
(gguf_model.py) refuse each with a message naming the key or tensor and the values;
well-formed variants of the catalog's architectures still pass."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ModelFileError
from engine.llama import gguf_check
from tests.helpers.malformed_gguf import KINDS, N_EMBD, N_FF, ModelSpec, corrupt, good_spec, write_model


def refusal(tmp_path: Path, spec: ModelSpec) -> str:
    path = write_model(tmp_path / "m.gguf", spec)
    with pytest.raises(ModelFileError) as err:
        gguf_check.check(path)
    message = str(err.value)
    assert "\n" not in message and message.endswith(f": {path}")
    return message.removesuffix(f": {path}")


def test_the_well_formed_spec_passes(tmp_path):
    info = gguf_check.check(write_model(tmp_path / "m.gguf", good_spec()))
    assert info.architecture == "llama" and len(info.tensors) == 12
    assert info.tensors[0].name == "token_embd.weight" and info.tensors[0].shape == (N_EMBD, 270)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), a=st.integers(0, 2**32), b=st.integers(0, 2**32))
def test_every_random_corruption_is_refused_naming_what_is_wrong(tmp_path_factory, kind, a, b):
    """The check alone, many files (the process-level property test is in
    tests/engine/cli/test_malformed_models.py)."""
    spec, words = corrupt(good_spec(), kind, a, b)
    assert words in refusal(tmp_path_factory.mktemp("c"), spec)


# ---------------------------------------------------------------- the cases named in the issue


def test_duplicate_token_string(tmp_path):
    spec = good_spec()
    tokens = list(spec.tokens)
    tokens[259] = tokens[258]
    assert refusal(tmp_path, replace(spec, tokens=tokens)) == (
        f"GGUF tokenizer.ggml.tokens: token 259 '{tokens[258]}' appears twice (ids 258 and 259)")


def test_duplicates_are_compared_as_bytes_not_as_decoded_text(tmp_path):
    spec = good_spec()
    tokens = list(spec.tokens)
    tokens[-5], tokens[-4] = b"\xff\xfe", b"\xff\xfd"  # both decode to U+FFFD U+FFFD; llama.cpp keeps both
    gguf_check.check(write_model(tmp_path / "m.gguf", replace(spec, tokens=tokens)))
    tokens[-4] = b"\xff\xfe"
    assert "appears twice (ids 265 and 266)" in refusal(tmp_path, replace(spec, tokens=tokens))


def test_an_empty_token_is_named_as_llama_cpp_names_it(tmp_path):
    spec = good_spec()
    tokens = list(spec.tokens)
    tokens[3], tokens[200] = "", "[EMPTY_3]"
    assert "token 200 '[EMPTY_3]' appears twice (ids 3 and 200)" in refusal(tmp_path, replace(spec, tokens=tokens))


def test_score_array_shorter_than_the_token_list(tmp_path):
    spec = good_spec()
    assert refusal(tmp_path, replace(spec, scores=spec.scores[:-1])) == (
        "GGUF tokenizer.ggml.scores has 269 entries but tokenizer.ggml.tokens has 270 (one per token)")


def test_token_type_array_of_another_length(tmp_path):
    spec = good_spec()
    assert refusal(tmp_path, replace(spec, types=[*spec.types, 1, 1])) == (
        "GGUF tokenizer.ggml.token_type has 272 entries but tokenizer.ggml.tokens has 270 (one per token)")


def test_merges_missing_or_not_strings(tmp_path):
    assert refusal(tmp_path, replace(good_spec(), merges=None)) == (
        "GGUF tokenizer.ggml.merges is missing; the 'gpt2' tokenizer needs it")
    assert refusal(tmp_path, replace(good_spec(), merges=[1, 2])) == (
        "GGUF tokenizer.ggml.merges is an array of int32, not an array of strings")


@pytest.mark.parametrize("name", ["bos", "eos", "padding", "unknown", "eot", "fim_pre"])
def test_special_token_id_outside_the_vocabulary(tmp_path, name):
    spec = good_spec()
    assert refusal(tmp_path, replace(spec, specials={**spec.specials, name: 270})) == (
        f"GGUF tokenizer.ggml.{name}_token_id is 270, not a token id (the vocabulary has 270 tokens, ids 0 to 269)")


def test_a_byte_token_that_does_not_spell_a_byte(tmp_path):
    spec = good_spec()
    types = list(spec.types)
    types[10] = 6
    assert "token_type: token 10 'Ċ' is typed as a byte but does not spell one (<0xHH>)" in refusal(
        tmp_path, replace(spec, types=types))


def test_no_vocabulary_at_all(tmp_path):
    message = refusal(tmp_path, replace(good_spec(), tokenizer="no_vocab"))
    assert message == "GGUF tokenizer.ggml.model is 'no_vocab': the file has no vocabulary to tokenize a prompt with"


def test_unknown_tokenizer(tmp_path):
    assert "tokenizer.ggml.model 'sentencepiece' is not a tokenizer llama.cpp knows" in refusal(
        tmp_path, replace(good_spec(), tokenizer="sentencepiece"))


def test_tensor_shape_contradicting_the_hyper_parameters(tmp_path):
    spec = good_spec()
    shapes = {**spec.shapes, "blk.0.ffn_gate.weight": (N_EMBD, N_FF + 1)}
    assert refusal(tmp_path, replace(spec, shapes=shapes)) == (
        "GGUF tensor 'blk.0.ffn_gate.weight' has shape [64, 129] but the hyper-parameters "
        "(embedding_length=64, feed_forward_length=128) make it [64, 128]")


def test_embedding_table_of_another_vocabulary_size(tmp_path):
    spec = good_spec()
    shapes = {**spec.shapes, "token_embd.weight": (N_EMBD, 300)}
    assert "tensor 'token_embd.weight' has shape [64, 300] but the hyper-parameters (embedding_length=64, " \
           "vocabulary of 270 tokens) make it [64, 270]" in refusal(tmp_path, replace(spec, shapes=shapes))


def test_tensor_data_offset_past_the_end_of_the_file(tmp_path):
    message = refusal(tmp_path, replace(good_spec(), offsets={"output.weight": 1 << 30}))
    assert message.startswith("truncated GGUF: tensor 'output.weight' ends at byte ")


def test_tensor_data_offset_that_overlaps_another_tensor(tmp_path):
    message = refusal(tmp_path, replace(good_spec(), offsets={"output.weight": 0}))
    assert message == "GGUF tensor 'output.weight' data offset 0 should be 69376 (right after the tensor before it)"


# ---------------------------------------------------------------- hyper-parameters llama.cpp asserts on


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("block_count", 0, "llama.block_count is 0; llama.cpp allows 1 to 512 layers"),
    ("block_count", 513, "llama.block_count is 513; llama.cpp allows 1 to 512 layers"),
    ("attention.head_count", 3,
     "llama.attention.head_count (3) is not a multiple of llama.attention.head_count_kv (2)"),
    ("attention.head_count_kv", 0, "attention.head_count_kv=0"),
    ("rope.dimension_count", 8, "llama head sizes disagree: key 16, value 16, rope.dimension_count 8"),
    ("expert_used_count", 2, "(more experts used per token than there are)"),
    ("expert_count", 2000, "(more than 1024 experts)"),
])
def test_hyper_parameters_llama_cpp_asserts_on(tmp_path, key, value, expected):
    spec = good_spec()
    assert expected in refusal(tmp_path, replace(spec, hparams={**spec.hparams, key: value}))


def test_unknown_rope_scaling_type(tmp_path):
    spec = good_spec()
    assert refusal(tmp_path, replace(spec, hparams={**spec.hparams, "rope.scaling.type": "wobbly"})) == (
        "llama.rope.scaling.type is 'wobbly'; llama.cpp knows none, linear, yarn, longrope")


def test_missing_tensor_is_named(tmp_path):
    spec = good_spec()
    shapes = {k: v for k, v in spec.shapes.items() if k != "blk.0.ffn_up.weight"}
    assert refusal(tmp_path, replace(spec, shapes=shapes)) == (
        "GGUF tensor 'blk.0.ffn_up.weight' is missing (expected [64, 128] from "
        "embedding_length=64, feed_forward_length=128)")


# ---------------------------------------------------------------- valid variants still pass


def test_optional_tensors_and_a_fused_qkv_pass(tmp_path):
    spec = good_spec()
    shapes = {k: v for k, v in spec.shapes.items() if k != "output.weight"}  # tied embeddings
    q, kv = N_EMBD, 2 * (N_EMBD // 4)
    fused = {k: v for k, v in shapes.items() if not k.startswith(("blk.0.attn_q.", "blk.0.attn_k.", "blk.0.attn_v."))}
    fused["blk.0.attn_qkv.weight"] = (N_EMBD, q + kv + kv)
    fused["rope_freqs.weight"] = (N_EMBD // 4 // 2,)
    gguf_check.check(write_model(tmp_path / "m.gguf", replace(spec, shapes=fused)))


@pytest.mark.parametrize(("heads", "ok"), [([4, 4], True), ([4, 2], False)])
def test_per_layer_sizes_must_agree(tmp_path, heads, ok):
    spec = good_spec()
    shapes = {**spec.shapes, **{k.replace("blk.0.", "blk.1."): v for k, v in spec.shapes.items() if "blk.0." in k}}
    spec = replace(spec, shapes=shapes, hparams={**spec.hparams, "block_count": 2, "attention.head_count": heads})
    if ok:
        gguf_check.check(write_model(tmp_path / "m.gguf", spec))
    else:
        assert refusal(tmp_path, spec) == "llama.attention.head_count differs between layers or is not a count: [4, 2]"
