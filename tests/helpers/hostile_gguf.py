"""Hostile GGUF files for the reliability tests (issue 6, item 3): each kind of damaged or
malicious header the defensive check must refuse, and a model whose chat template tries
to run code (Jinja injection)."""

from __future__ import annotations

import struct
from pathlib import Path

from tests.helpers.tiny_gguf import write_tiny_gguf


def _u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def _gstr(text: str) -> bytes:
    return _u64(len(text.encode())) + text.encode()


def _header(kvs: list[bytes], tensors: list[bytes]) -> bytes:
    head = b"GGUF" + struct.pack("<I", 3) + _u64(len(tensors))
    head += _u64(len(kvs)) + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % 32) + b"\0" * 4096


ARCH = _gstr("general.architecture") + struct.pack("<I", 8) + _gstr("llama")


def hostile_files(tiny: bytes, canary: Path) -> dict[str, tuple[bytes, str]]:
    """id -> (file content, words the refusal must contain).  `tiny` is a valid tiny GGUF's
    bytes; the template injection would create `canary` if it ever ran."""
    # one F32 tensor "w" of 2^30 x 2^30 x 2^30 elements at offset 0
    absurd_dims = _gstr("w") + struct.pack("<I", 3) + _u64(2**30) * 3 + struct.pack("<I", 0) + _u64(0)
    huge_string = _gstr("general.name") + struct.pack("<I", 8) + _u64(2**31)  # claims 2 GiB, holds nothing
    injection = "{{ cycler.__init__.__globals__.os.popen('touch " + str(canary) + "').read() }}"
    template_file = write_tiny_gguf(canary.parent / "template-src.gguf", chat_template=injection).read_bytes()
    return {
        "evil-truncated": (tiny[: len(tiny) // 2], "truncated GGUF"),
        "evil-magic": (b"PK\x03\x04" + tiny[4:], "not a GGUF file"),
        "evil-tensor-count": (tiny[:8] + _u64(2**40) + tiny[16:], "tensor count absurd"),
        "evil-dimensions": (_header([ARCH], [absurd_dims]), "absurdly large"),
        "evil-metadata": (_header([ARCH, huge_string], []), "metadata string too long"),
        # the header is fine: the template is refused when the engine first renders it, at load
        "evil-template": (template_file, "chat template tried something unsafe"),
    }
