"""A defensive GGUF header reader, run before llama.cpp ever opens a file.

llama.cpp's own parser trusts lengths from the file more than we want to: a hostile
or damaged file (a 2 GiB "string", 2^40 tensors, a tensor pointing past the end of a
truncated download) can make it allocate wildly or crash the whole app.  This module
reads the header with plain file I/O and `struct`, checks every length against a fixed
bound AND against the bytes actually left in the file *before* reading it, and keeps
memory bounded (big arrays such as the tokenizer vocabulary are skipped, only
summarized).  Every rejection is a ModelFileError with a one-line message.

Past the header, llama.cpp also *asserts* (SIGABRT, not an error) on files whose parts
contradict each other: the same token string twice, a vocabulary its score or type
arrays do not cover, hyper-parameters its graph cannot be built from.  Those checks
live beside this reader: gguf_vocab.py (the tokenizer) and gguf_model.py
(hyper-parameters and tensor shapes of the catalog's architectures); the layout and
type tables are in gguf_format.py.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Collection, Mapping
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import ModelFileError
from engine.llama.gguf_format import (
    ARRAY,
    DEFAULT_ALIGNMENT,
    GGML_TYPES,
    MAGIC,
    SCALARS,
    STRING,
    SUPPORTED_VERSIONS,
    TYPE_NAMES,
    ArraySummary,
    GGUFInfo,
    TensorInfo,
    is_int,
)
from engine.llama.gguf_format import show as _show
from engine.llama.gguf_model import check_model
from engine.llama.gguf_vocab import check_vocabulary

__all__ = ["GGML_TYPES", "ArraySummary", "GGUFInfo", "TensorInfo", "check", "read_metadata"]

MAX_TENSORS = 100_000
MAX_KV = 100_000
MAX_STRING = 16 * 1024 * 1024  # bytes; chat templates are a few KiB
MAX_KEY = 64 * 1024  # bytes; keys are identifiers such as "qwen2.context_length"
MAX_ARRAY = 16 * 1024 * 1024  # items; the largest real vocabularies are ~262k tokens
MAX_TENSOR_NAME = 63  # GGML_MAX_NAME is 64 including the terminating NUL
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ELEMENTS = 1 << 40  # per tensor; the largest real tensors are a few 1e9
KEEP_ARRAY_ITEMS = 64  # arrays up to this length are returned in full
_BUFFER = 1 << 20
# read in full whatever their length, for the vocabulary checks (gguf_vocab.py)
_TOKENS, _TOKEN_TYPES = "tokenizer.ggml.tokens", "tokenizer.ggml.token_type"


def check(path: str | Path, *, keep_arrays: Collection[str] = ()) -> GGUFInfo:
    """Validate the header and tensor table of `path`; raise ModelFileError if unsafe.

    `keep_arrays` names metadata arrays to return in full however long they are
    (still bounded by MAX_ARRAY / MAX_STRING).
    """
    path = Path(path)
    with _open(path) as f:
        # one load checks the same file several times (memory estimate, GPU layers, the
        # load itself): a big file unchanged since it passed is not read again
        key = _identity(f, path) if not keep_arrays else None
        if key is not None and key in _passed:
            return _passed[key]
        info = _Parser(f, path, keep_arrays).parse()
    if key is not None:
        _passed[key] = info
        while len(_passed) > _REMEMBER_PASSED:
            _passed.pop(next(iter(_passed)))
    return info


_passed: dict[tuple, GGUFInfo] = {}
_REMEMBER_PASSED = 8
_REMEMBER_FROM = 64 << 20  # bytes: a small file is re-read in no time, and may be rewritten within one mtime tick


def _identity(f: BinaryIO, path: Path) -> tuple | None:
    try:
        st = os.fstat(f.fileno())
    except OSError:
        return None
    if st.st_size < _REMEMBER_FROM:
        return None
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_metadata(path: str | Path, keys: Collection[str] | None = None) -> dict[str, Any]:
    """The validated metadata of `path` (all of it, or only `keys`, with those arrays in full)."""
    info = check(path, keep_arrays=keys or ())
    if keys is None:
        return dict(info.metadata)
    return {k: info.metadata[k] for k in keys if k in info.metadata}


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb", buffering=_BUFFER)  # the caller closes it (with-block)
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"not a file (a directory): {path}") from None
    except PermissionError:
        raise ModelFileError(f"cannot read model file (permission denied): {path}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file ({exc.strerror or exc}): {path}") from None


class _Parser:
    """One pass over the header.  `pos` mirrors the file position so every length can
    be compared with `size - pos` without a system call."""

    def __init__(self, f: BinaryIO, path: Path, keep_arrays: Collection[str]) -> None:
        self.f, self.path, self.keep = f, path, frozenset(keep_arrays)
        self.size = _file_size(f, path)
        self.pos = 0
        # the vocabulary as llama.cpp sees it (raw bytes, not decoded) for gguf_vocab.py
        self.tokens: list[bytes] | None = None
        self.token_types: list[int] | None = None
        self.array_types: dict[str, str] = {}  # key -> item type of every array

    # -------------------------------------------------------------- primitives
    def fail(self, message: str) -> ModelFileError:
        return ModelFileError(f"{message}: {self.path}")

    def remaining(self) -> int:
        return self.size - self.pos

    def _truncated(self, what: str) -> ModelFileError:
        return self.fail(f"truncated GGUF: {what} at byte {self.pos} runs past the end of the file ({self.size} bytes)")

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining():
            raise self._truncated(what)
        data = self.f.read(n)
        if len(data) != n:  # the file shrank under us
            raise self._truncated(what)
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.remaining():
            raise self._truncated(what)
        self.f.seek(n, 1)
        self.pos += n

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack("<Q", self.take(8, what))[0]

    def string(self, what: str, limit: int, too_long: str) -> bytes:
        n = self.u64(what)
        if n > limit:
            raise self.fail(f"{too_long} ({n} bytes) {what}")
        return self.take(n, what)

    # -------------------------------------------------------------- sections
    def parse(self) -> GGUFInfo:
        version, n_tensors, n_kv = self.header()
        metadata = self.metadata(n_kv)
        alignment = self.alignment(metadata)
        tensors = self.tensor_infos(n_tensors)
        data_offset = _align(self.pos, alignment)
        data_end = self.check_tensor_data(tensors, data_offset, alignment)
        info = GGUFInfo(
            path=self.path,
            file_size=self.size,
            version=version,
            n_tensors=n_tensors,
            n_kv=n_kv,
            alignment=alignment,
            data_offset=data_offset,
            data_end=data_end,
            metadata=metadata,
            tensors=tuple(tensors),
        )
        # what llama.cpp would assert on (abort) or refuse with a vaguer message
        check_vocabulary(info.metadata, self.array_types, self.tokens, self.token_types, self.fail)
        check_model(info, self.fail)
        return info

    def header(self) -> tuple[int, int, int]:
        if self.size < len(MAGIC):
            raise self.fail(f"not a GGUF file ({'empty file' if self.size == 0 else f'only {self.size} bytes'})")
        magic = self.take(4, "magic")
        if magic != MAGIC:
            raise self.fail(f"not a GGUF file (magic {magic!r})")
        version = self.u32("version")
        if version not in SUPPORTED_VERSIONS:
            hint = " (big-endian file?)" if version > 0xFFFF else ""
            raise self.fail(f"unsupported GGUF version {version}{hint}; supported: 2, 3")
        n_tensors = self.u64("tensor count")
        n_kv = self.u64("metadata count")
        # a tensor info takes >= 33 bytes and a kv >= 13: a count the file cannot hold is absurd
        if n_tensors > MAX_TENSORS or n_tensors * 33 > self.remaining():
            raise self.fail(f"GGUF tensor count absurd ({n_tensors}) for a file of {self.size} bytes")
        if n_kv > MAX_KV or n_kv * 13 > self.remaining():
            raise self.fail(f"GGUF metadata count absurd ({n_kv}) for a file of {self.size} bytes")
        return version, n_tensors, n_kv

    def metadata(self, n_kv: int) -> dict[str, Any]:
        metadata: dict[str, Any] = {}
        for i in range(n_kv):
            raw = self.string(f"in metadata entry #{i}", MAX_KEY, "GGUF metadata key too long")
            key = raw.decode("utf-8", errors="replace")
            if key in metadata:
                raise self.fail(f"GGUF metadata key '{_show(key)}' appears twice")
            vtype = self.u32(f"type of key '{_show(key)}'")
            metadata[key] = self.value(vtype, key)
        return metadata

    def value(self, vtype: int, key: str) -> Any:
        if vtype in SCALARS:
            _, fmt, size = SCALARS[vtype]
            return struct.unpack("<" + fmt, self.take(size, f"value of key '{_show(key)}'"))[0]
        if vtype == STRING:
            raw = self.string(f"at key '{_show(key)}'", MAX_STRING, "GGUF metadata string too long")
            return raw.decode("utf-8", errors="replace")
        if vtype == ARRAY:
            return self.array(key)
        raise self.fail(f"GGUF metadata key '{_show(key)}' has unknown value type {vtype}")

    def array(self, key: str) -> Any:
        etype = self.u32(f"array type of key '{_show(key)}'")
        n = self.u64(f"array length of key '{_show(key)}'")
        if etype not in SCALARS and etype != STRING:
            # nested arrays: llama.cpp rejects them too
            raise self.fail(
                f"GGUF metadata array '{_show(key)}' has unsupported item type {TYPE_NAMES.get(etype, etype)}"
            )
        if n > MAX_ARRAY:
            raise self.fail(f"GGUF metadata array too long ({n} items) at key '{_show(key)}'")
        min_item = SCALARS[etype][2] if etype in SCALARS else 8
        if n * min_item > self.remaining():
            raise self._truncated(f"array '{_show(key)}' of {n} items")
        keep = n <= KEEP_ARRAY_ITEMS or key in self.keep
        self.array_types[key] = TYPE_NAMES[etype]
        if key == _TOKENS and etype == STRING:
            self.tokens = self.string_items(n, key, True, raw=True)
            items = [t.decode("utf-8", errors="replace") for t in self.tokens] if keep else None
        elif key == _TOKEN_TYPES and etype in SCALARS:
            items = self.token_types = self.scalar_items(etype, n, key, True)
        else:
            read = self.string_items if etype == STRING else partial(self.scalar_items, etype)
            items = read(n, key, keep)
        return items if keep else ArraySummary(TYPE_NAMES[etype], n)

    def scalar_items(self, etype: int, n: int, key: str, keep: bool) -> list | None:
        _, fmt, size = SCALARS[etype]
        if not keep:
            self.skip(n * size, f"array '{_show(key)}'")
            return None
        return list(struct.unpack(f"<{n}{fmt}", self.take(n * size, f"array '{_show(key)}'")))

    def string_items(self, n: int, key: str, keep: bool, raw: bool = False) -> list | None:
        # the hot loop of the whole check (150k+ tokenizer strings): locals, no helpers
        items: list | None = [] if keep else None
        f, size, pos, unpack = self.f, self.size, self.pos, struct.Struct("<Q").unpack
        for i in range(n):
            if size - pos < 8:
                self.pos = pos
                raise self._truncated(f"item {i} of array '{_show(key)}'")
            length = unpack(f.read(8))[0]
            pos += 8
            if length > MAX_STRING:
                self.pos = pos
                raise self.fail(f"GGUF metadata string too long ({length} bytes) at item {i} of key '{_show(key)}'")
            if length > size - pos:
                self.pos = pos
                raise self._truncated(f"item {i} of array '{_show(key)}'")
            if items is not None:
                data = f.read(length)
                items.append(data if raw else data.decode("utf-8", errors="replace"))
            else:
                f.seek(length, 1)
            pos += length
        self.pos = pos
        if f.tell() != pos:  # the file changed under us; do not trust anything read
            raise self._truncated(f"array '{_show(key)}'")
        return items

    def alignment(self, metadata: Mapping[str, Any]) -> int:
        value = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not is_int(value) or value <= 0 or value & (value - 1):
            raise self.fail(f"GGUF general.alignment must be a power of two, got {value!r}")
        return value

    def tensor_infos(self, n_tensors: int) -> list[TensorInfo]:
        """Every tensor's name, shape, type and place, each checked for shape and type."""
        tensors: list[TensorInfo] = []
        seen: set[str] = set()
        for i in range(n_tensors):
            raw = self.string(f"in tensor #{i}", MAX_TENSOR_NAME, "GGUF tensor name too long")
            name = raw.decode("utf-8", errors="replace")
            if name in seen:
                raise self.fail(f"GGUF tensor '{_show(name)}' appears twice")
            seen.add(name)
            tensors.append(self.tensor_info(name))
        return tensors

    def tensor_info(self, name: str) -> TensorInfo:
        n_dims = self.u32(f"dimension count of tensor '{_show(name)}'")
        if not 1 <= n_dims <= MAX_DIMS:
            raise self.fail(f"GGUF tensor '{_show(name)}' has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        dims = struct.unpack(f"<{n_dims}Q", self.take(8 * n_dims, f"shape of tensor '{_show(name)}'"))
        n_elements = 1
        for d in dims:
            if d == 0:
                raise self.fail(f"GGUF tensor '{_show(name)}' has a zero dimension {list(dims)}")
            n_elements *= d
            if n_elements > MAX_ELEMENTS:
                raise self.fail(f"GGUF tensor '{_show(name)}' shape {list(dims)} is absurdly large")
        ggml_type = self.u32(f"type of tensor '{_show(name)}'")
        if ggml_type not in GGML_TYPES:
            raise self.fail(f"GGUF tensor '{_show(name)}' has unknown ggml type {ggml_type}")
        type_name, block, block_bytes = GGML_TYPES[ggml_type]
        if dims[0] % block:
            raise self.fail(
                f"GGUF tensor '{_show(name)}' row of {dims[0]} is not a multiple of the {type_name} block ({block})"
            )
        offset = self.u64(f"offset of tensor '{_show(name)}'")
        return TensorInfo(name, tuple(dims), type_name, offset, n_elements // block * block_bytes)

    def check_tensor_data(self, tensors: list[TensorInfo], data_offset: int, alignment: int) -> int:
        """Every tensor's bytes must lie inside the file (catches truncated downloads), one
        tensor after the other as llama.cpp's reader requires."""
        data_end = expected = data_offset
        for t in tensors:
            if t.offset % alignment:
                raise self.fail(f"GGUF tensor '{_show(t.name)}' offset {t.offset} is not aligned to {alignment}")
            start = data_offset + t.offset
            if start + t.n_bytes > self.size:
                raise self.fail(
                    f"truncated GGUF: tensor '{_show(t.name)}' ends at byte {start + t.n_bytes} "
                    f"but the file has {self.size} bytes"
                )
            if start != expected:
                raise self.fail(
                    f"GGUF tensor '{_show(t.name)}' data offset {t.offset} should be {expected - data_offset} "
                    "(right after the tensor before it)"
                )
            expected = _align(start + t.n_bytes, alignment)
            data_end = max(data_end, start + t.n_bytes)
        return data_end


def _file_size(f: BinaryIO, path: Path) -> int:
    try:
        return os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise ModelFileError(f"cannot read model file ({exc.strerror or exc}): {path}") from None


def _align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment
