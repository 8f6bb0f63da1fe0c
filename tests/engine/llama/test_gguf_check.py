"""The defensive GGUF header check: valid files pass with their metadata; every kind
of damaged or hostile header is refused with a one-line ModelFileError before
llama.cpp could see it."""

from __future__ import annotations

import re
import struct
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ModelFileError
from engine.llama import gguf_check
from engine.llama.gguf_check import ArraySummary
from tests.helpers.tiny_gguf import CHAT_TEMPLATE, write_tiny_gguf

# ---------------------------------------------------------------- crafting headers by hand


def u32(v: int) -> bytes:
    return struct.pack("<I", v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def gstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return u64(len(raw)) + raw


def kv_str(key: str, value: str) -> bytes:
    return gstr(key) + u32(8) + gstr(value)


def kv_u32(key: str, value: int) -> bytes:
    return gstr(key) + u32(4) + u32(value)


def tensor(name: str, dims: list[int], ggml_type: int = 0, offset: int = 0) -> bytes:
    return gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ggml_type) + u64(offset)


def gguf(
    kvs: list[bytes] = (),
    tensors: list[bytes] = (),
    *,
    data: bytes = b"",
    version: int = 3,
    n_tensors: int | None = None,
    n_kv: int | None = None,
    alignment: int = 32,
) -> bytes:
    head = b"GGUF" + u32(version) + u64(len(tensors) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(tensors)
    head += b"\0" * (-len(head) % alignment)
    return head + data


ARCH = kv_str("general.architecture", "llama")
ONE_TENSOR = [tensor("w", [4])]  # 4 x F32 = 16 bytes


def write(tmp_path: Path, data: bytes, name: str = "m.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(path: Path) -> str:
    with pytest.raises(ModelFileError) as err:
        gguf_check.check(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.endswith(f": {path}")
    return message


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


# ---------------------------------------------------------------- valid files


def test_tiny_model_passes_with_metadata(tiny):
    import gguf as gguf_pkg

    info = gguf_check.check(tiny)
    reader = gguf_pkg.GGUFReader(str(tiny))
    assert info.version == 3
    assert info.n_tensors == len(reader.tensors)
    assert info.n_kv == len(reader.fields) - 3  # GGUFReader counts the header fields too
    assert info.architecture == "llama"
    assert info.context_length == 512
    assert info.chat_template == CHAT_TEMPLATE
    assert info.file_size == tiny.stat().st_size == info.data_end
    assert info.data_offset % info.alignment == 0
    tokens = info.metadata["tokenizer.ggml.tokens"]
    assert tokens == ArraySummary("string", 270)  # big arrays are summarized, not kept
    assert info.metadata["tokenizer.ggml.merges"][0] == "h e"  # small arrays are kept


def test_read_metadata_returns_requested_keys_in_full(tiny):
    meta = gguf_check.read_metadata(tiny, ["tokenizer.chat_template", "tokenizer.ggml.tokens", "nope"])
    assert set(meta) == {"tokenizer.chat_template", "tokenizer.ggml.tokens"}
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert len(meta["tokenizer.ggml.tokens"]) == 270 and meta["tokenizer.ggml.tokens"][104] == "h"
    assert gguf_check.read_metadata(tiny)["general.architecture"] == "llama"


def test_minimal_handmade_file_passes(tmp_path):
    info = gguf_check.check(write(tmp_path, gguf([ARCH], ONE_TENSOR, data=b"\0" * 16)))
    assert (info.n_tensors, info.n_kv, info.architecture, info.name) == (1, 1, "llama", None)
    assert info.data_end == info.file_size


def test_version_2_is_accepted(tmp_path):
    assert gguf_check.check(write(tmp_path, gguf([ARCH], ONE_TENSOR, data=b"\0" * 16, version=2))).version == 2


def test_type_table_matches_gguf_package():
    from gguf.constants import GGML_QUANT_SIZES

    for type_id, (name, block, size) in gguf_check.GGML_TYPES.items():
        assert GGML_QUANT_SIZES[type_id] == (block, size), name


# ---------------------------------------------------------------- not a GGUF at all


def test_missing_path(tmp_path):
    path = tmp_path / "nope.gguf"
    assert refused(path) == f"model file not found: {path}"


def test_directory(tmp_path):
    assert refused(tmp_path).startswith("not a file")


def test_empty_file(tmp_path):
    assert refused(write(tmp_path, b"")).startswith("not a GGUF file (empty file)")


def test_zip_file(tmp_path):
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.txt", "hello")
    assert refused(path) == f"not a GGUF file (magic b'PK\\x03\\x04'): {path}"


def test_text_file(tmp_path):
    assert refused(write(tmp_path, b"just some text\n")).startswith("not a GGUF file (magic b'just')")


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (1, "unsupported GGUF version 1; supported: 2, 3"),
        (4, "unsupported GGUF version 4"),
        (0x03000000, "unsupported GGUF version 50331648 (big-endian file?)"),
    ],
)
def test_unsupported_versions(tmp_path, version, expected):
    assert refused(write(tmp_path, gguf([ARCH], version=version))).startswith(expected)


# ---------------------------------------------------------------- truncation


def test_truncated_in_the_tensor_data(tmp_path, tiny):
    data = tiny.read_bytes()
    path = write(tmp_path, data[: len(data) // 2])
    message = refused(path)
    m = re.match(r"truncated GGUF: tensor '([^']+)' ends at byte (\d+) but the file has (\d+) bytes", message)
    assert m, message
    assert int(m[2]) > int(m[3]) == len(data) // 2


def test_truncated_in_the_header(tmp_path, tiny):
    message = refused(write(tmp_path, tiny.read_bytes()[:1000]))
    assert message.startswith("truncated GGUF: ")
    assert "runs past the end of the file (1000 bytes)" in message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=440_575))
def test_any_truncation_is_refused(tmp_path_factory, cut):
    data = _tiny_bytes(tmp_path_factory)
    path = tmp_path_factory.mktemp("cut") / "cut.gguf"
    path.write_bytes(data[:cut])
    with pytest.raises(ModelFileError):
        gguf_check.check(path)


# ---------------------------------------------------------------- absurd counts and lengths


def test_absurd_tensor_count(tmp_path):
    message = refused(write(tmp_path, gguf([ARCH], n_tensors=2**40)))
    assert message.startswith("GGUF tensor count absurd (1099511627776)")


def test_tensor_count_over_the_limit_even_in_a_big_file(tmp_path):
    message = refused(write(tmp_path, gguf([ARCH], n_tensors=100_001, data=b"\0" * 4_000_000)))
    assert message.startswith("GGUF tensor count absurd (100001)")


def test_absurd_kv_count(tmp_path):
    assert refused(write(tmp_path, gguf([ARCH], n_kv=2**62))).startswith("GGUF metadata count absurd")


def test_huge_metadata_string(tmp_path):
    kv = gstr("general.name") + u32(8) + u64(2**31)  # claims 2 GiB, holds nothing
    message = refused(write(tmp_path, gguf([ARCH, kv], data=b"\0" * 64)))
    assert message.startswith("GGUF metadata string too long (2147483648 bytes) at key 'general.name'")


def test_string_longer_than_the_file(tmp_path):
    kv = gstr("general.name") + u32(8) + u64(5000) + b"abc"
    assert "truncated GGUF" in refused(write(tmp_path, gguf([ARCH, kv])))


def test_huge_key(tmp_path):
    kv = u64(2**40) + b"key"
    assert refused(write(tmp_path, gguf([kv]))).startswith("GGUF metadata key too long (1099511627776 bytes)")


def test_huge_array(tmp_path):
    kv = gstr("tokenizer.ggml.scores") + u32(9) + u32(6) + u64(2**32)
    message = refused(write(tmp_path, gguf([ARCH, kv], data=b"\0" * 256)))
    assert message.startswith("GGUF metadata array too long (4294967296 items) at key 'tokenizer.ggml.scores'")


def test_array_longer_than_the_file(tmp_path):
    kv = gstr("tokenizer.ggml.scores") + u32(9) + u32(6) + u64(1_000_000)
    assert "truncated GGUF: array 'tokenizer.ggml.scores'" in refused(write(tmp_path, gguf([ARCH, kv])))


def test_huge_string_inside_an_array(tmp_path):
    kv = gstr("tokenizer.ggml.tokens") + u32(9) + u32(8) + u64(2) + gstr("a") + u64(2**31)
    message = refused(write(tmp_path, gguf([ARCH, kv], data=b"\0" * 64)))
    assert "string too long (2147483648 bytes) at item 1 of key 'tokenizer.ggml.tokens'" in message


def test_nested_array(tmp_path):
    kv = gstr("x") + u32(9) + u32(9) + u64(1)
    assert "unsupported item type array" in refused(write(tmp_path, gguf([kv], data=b"\0" * 64)))


def test_unknown_value_type(tmp_path):
    kv = gstr("x") + u32(99) + u32(0)
    assert "unknown value type 99" in refused(write(tmp_path, gguf([kv], data=b"\0" * 64)))


def test_duplicate_key(tmp_path):
    assert "appears twice" in refused(write(tmp_path, gguf([ARCH, ARCH])))


@pytest.mark.parametrize(
    "alignment",
    [
        kv_u32("general.alignment", 48),
        kv_u32("general.alignment", 0),
        kv_str("general.alignment", "32"),
    ],
)
def test_bad_alignment(tmp_path, alignment):
    assert "general.alignment must be a power of two" in refused(write(tmp_path, gguf([ARCH, alignment])))


# ---------------------------------------------------------------- tensor table


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (tensor("w", [4, 4, 4, 4, 4]), "has 5 dimensions (1 to 4 allowed)"),
        (tensor("w", []), "has 0 dimensions"),
        (tensor("w", [4, 0]), "has a zero dimension [4, 0]"),
        (tensor("w", [2**30, 2**30, 2**30]), "is absurdly large"),
        (tensor("w", [4], ggml_type=99), "unknown ggml type 99"),
        (tensor("w", [33], ggml_type=2), "row of 33 is not a multiple of the Q4_0 block (32)"),
        (tensor("w", [4], offset=3), "offset 3 is not aligned to 32"),
        (tensor("x" * 64, [4]), "GGUF tensor name too long (64 bytes)"),
    ],
)
def test_bad_tensor_info(tmp_path, spec, expected):
    assert expected in refused(write(tmp_path, gguf([ARCH], [spec], data=b"\0" * 64)))


def test_duplicate_tensor(tmp_path):
    path = write(tmp_path, gguf([ARCH], [tensor("w", [4]), tensor("w", [4], offset=32)], data=b"\0" * 64))
    assert "tensor 'w' appears twice" in refused(path)


def test_tensor_pointing_past_the_end(tmp_path):
    path = write(tmp_path, gguf([ARCH], [tensor("output.weight", [4], offset=1 << 20)], data=b"\0" * 16))
    message = refused(path)
    assert re.match(
        r"truncated GGUF: tensor 'output.weight' ends at byte \d+ but the file has \d+ bytes",
        message,
    )


# ---------------------------------------------------------------- fuzzing: refuse, never crash

_cache: dict[str, bytes] = {}


def _tiny_bytes(factory) -> bytes:
    if "tiny" not in _cache:
        _cache["tiny"] = write_tiny_gguf(factory.mktemp("fuzz") / "t.gguf").read_bytes()
    return _cache["tiny"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 9999), st.integers(1, 255)), min_size=1, max_size=6))
def test_corrupted_headers_are_refused_or_parsed_never_crash(tmp_path_factory, flips):
    data = bytearray(_tiny_bytes(tmp_path_factory))
    for pos, xor in flips:  # the header and tensor table live in the first ~10 kB
        data[pos] ^= xor
    path = tmp_path_factory.mktemp("flip") / "f.gguf"
    path.write_bytes(bytes(data))
    start = time.perf_counter()
    try:
        info = gguf_check.check(path)
    except ModelFileError as exc:
        assert "\n" not in str(exc)
    else:
        assert info.data_end <= info.file_size
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------- a real model (when provisioned)


@pytest.mark.models
def test_real_qwen_header_is_checked_quickly():
    from engine.models import provision
    path = provision.local_path("qwen2.5-coder-1.5b-instruct-q4_k_m")
    if path is None:
        pytest.skip("Qwen2.5-Coder-1.5B not provisioned (tandem models pull --default-pair)")
    start = time.perf_counter()
    info = gguf_check.check(path)
    elapsed = time.perf_counter() - start
    assert info.architecture == "qwen2"
    assert "<|im_start|>" in (info.chat_template or "")
    assert info.metadata["tokenizer.ggml.tokens"].length == 151936
    assert info.data_end == info.file_size == 1_117_320_768
    assert elapsed < 2.0
