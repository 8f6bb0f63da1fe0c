"""Deriving a cheaper draft from an installed one with llama.cpp's own quantizer.

The draft never changes what the target says, only how often its guesses are
accepted, so a draft re-quantized to a type this computer multiplies fast (Q4_0 is
repacked for the CPU's gemm kernels, DESIGN §2) is free to try: measured here, a
one-token draft decode of the 0.5B takes about half as long as shipped.

A derivation is a recipe (types for the blocks, the output and the token
embeddings) applied to a source file with a known sha256.  llama.cpp's
quantization is deterministic, so the catalog records the sha256 of the result
and a derived file is verified like a downloaded one.

The quantizer writes to a temporary file next to the destination; the real name
only ever appears by an atomic rename after it finished.  llama_model_quantize
cannot be interrupted, so it runs on a worker thread: a cancel is honoured as soon
as the call returns (seconds for a 0.5B model), and its output is deleted.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.errors import Cancelled, ModelFileError

# The weight types a recipe may name (llama.cpp's GGML_TYPE_* / LLAMA_FTYPE_MOSTLY_*).
TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q8_0", "IQ4_NL", "Q4_K", "Q6_K")
FTYPES = {"Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q8_0": "Q8_0", "IQ4_NL": "IQ4_NL", "Q4_K": "Q4_K_M"}


@dataclass(frozen=True)
class Recipe:
    """How a derived file is made: every 2-D block tensor as `blocks` (`pure`: no
    per-tensor exceptions of llama.cpp's mixes), the output matrix and the token
    embeddings as named.  Qwen2.5's 0.5B ties its output to the embeddings, so
    there `embeddings` decides the LM head's type."""

    blocks: str
    output: str
    embeddings: str
    pure: bool = True

    def __post_init__(self) -> None:
        for name in (self.blocks, self.output, self.embeddings):
            if name not in TYPES:
                raise ValueError(f"unknown weight type {name!r}; known: {', '.join(TYPES)}")
        if self.blocks not in FTYPES:
            raise ValueError(f"{self.blocks} cannot be the block type; choose from {', '.join(FTYPES)}")

    @property
    def label(self) -> str:
        if self.blocks == self.output == self.embeddings:
            return f"{self.blocks} everywhere"
        return f"{self.blocks} blocks, {self.output} output, {self.embeddings} embeddings"

    def to_dict(self) -> dict:
        return {"blocks": self.blocks, "output": self.output, "embeddings": self.embeddings, "pure": self.pure}

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return cls(str(d["blocks"]), str(d["output"]), str(d["embeddings"]), bool(d.get("pure", True)))


# The variants issue 14 asks to compare (measured in the README; the catalog keeps the best).
VARIANTS = {
    "q4_0": Recipe("Q4_0", "Q4_0", "Q4_0"),
    "q4_0-q8out": Recipe("Q4_0", "Q8_0", "Q8_0"),
    "iq4_nl": Recipe("IQ4_NL", "IQ4_NL", "IQ4_NL"),
}


def derive(
    source: Path,
    dest: Path,
    recipe: Recipe,
    *,
    cancel: threading.Event | None = None,
    threads: int = 0,
) -> Path:
    """Quantize `source` into `dest` following `recipe`.  On success `dest` holds the
    whole result (renamed into place); on failure or cancel nothing new is left."""
    import llama_cpp as C

    from engine.llama.backend import init_backend, last_llama_error

    source, dest = Path(source), Path(dest)
    if not source.is_file():
        raise ModelFileError(f"cannot derive from {source}: no such file")
    init_backend()
    params = C.llama_model_quantize_default_params()
    params.ftype = getattr(C, f"LLAMA_FTYPE_MOSTLY_{FTYPES[recipe.blocks]}")
    params.output_tensor_type = getattr(C, f"GGML_TYPE_{recipe.output}")
    params.token_embedding_type = getattr(C, f"GGML_TYPE_{recipe.embeddings}")
    params.allow_requantize = True
    params.quantize_output_tensor = True
    params.pure = recipe.pure
    params.nthread = threads

    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*.deriving"):  # from a process killed mid-way
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".deriving", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # a model file like any other, not mkstemp's 0600
    result: list[int] = []

    def work() -> None:
        result.append(int(C.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)))

    worker = threading.Thread(target=work, name="tandem-derive", daemon=True)
    try:
        if cancel is not None and cancel.is_set():
            raise Cancelled("derivation cancelled")
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
        if cancel is not None and cancel.is_set():
            raise Cancelled("derivation cancelled; nothing was written")
        if not result or result[0] != 0:
            raise ModelFileError(f"llama.cpp could not quantize {source.name}: {last_llama_error()}")
        os.replace(tmp, dest)
    finally:
        if worker.is_alive():
            worker.join()  # never delete a file the quantizer is still writing
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest

