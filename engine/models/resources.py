"""Will it fit?  Checked before llama.cpp is asked, so an oversized request gets a
clear message instead of an out-of-memory kill or a frozen machine.

Memory needed ≈ the model files (llama.cpp maps them and reads every weight) +
the KV caches (2 × layers × context × KV heads × head size × 2 bytes, f16) + the
compute buffers (measured as roughly vocabulary × batch × 4 bytes of logits and
a few hundred MB of scratch).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.errors import TandemError

SCRATCH_BYTES = 300 * 2**20  # compute graphs, batch, logits of a 512-token batch


class ResourceError(TandemError):
    """The request does not fit this machine."""

    exit_code = 7


@dataclass(frozen=True)
class ModelShape:
    file_bytes: int
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int

    def kv_bytes(self, n_ctx: int) -> int:
        head_dim = self.n_embd // max(self.n_head, 1)
        return 2 * self.n_layer * n_ctx * self.n_head_kv * head_dim * 2


def model_shape(path: str | Path) -> ModelShape:
    from engine.llama.gguf_check import check

    info = check(path)
    arch = info.architecture or "llama"
    meta = info.metadata

    def num(key: str, default: int) -> int:
        value = meta.get(f"{arch}.{key}", default)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default

    n_head = num("attention.head_count", 1)
    return ModelShape(info.file_size, num("block_count", 1), num("embedding_length", 1), n_head,
                      num("attention.head_count_kv", n_head))


def available_memory() -> int | None:
    """Bytes the system can give us without swapping (None when unknown).
    TANDEM_MEMORY_LIMIT overrides it (tests; or a user capping the app)."""
    if os.environ.get("TANDEM_MEMORY_LIMIT"):
        return int(os.environ["TANDEM_MEMORY_LIMIT"])
    if sys.platform.startswith("linux"):
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    if sys.platform == "darwin":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return None
    if os.name == "nt":
        import ctypes

        class Status(ctypes.Structure):
            _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong), ("total", ctypes.c_ulonglong),
                        ("avail", ctypes.c_ulonglong), ("tp", ctypes.c_ulonglong), ("ap", ctypes.c_ulonglong),
                        ("tv", ctypes.c_ulonglong), ("av", ctypes.c_ulonglong), ("ext", ctypes.c_ulonglong)]

        status = Status()
        status.length = ctypes.sizeof(Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return int(status.avail)
    return None


def needed_bytes(paths: list[str], n_ctx: int) -> int:
    total = 0
    for path in paths:
        shape = model_shape(path)
        total += shape.file_bytes + shape.kv_bytes(n_ctx) + SCRATCH_BYTES
    return total


def check_fits(target: str, draft: str | None, n_ctx: int, *, target_remote: bool = False) -> None:
    """`target_remote`: the target's layers and KV cache live on remote devices, so
    only the draft has to fit here."""
    paths = ([] if target_remote else [target]) + ([draft] if draft else [])
    if not paths:
        return
    need = needed_bytes(paths, n_ctx)
    have = available_memory()
    if have is not None and need > have:
        names = " and ".join(Path(p).name for p in paths)
        raise ResourceError(
            f"{names} with a {n_ctx}-token context need about {need / 2**30:.1f} GB of memory but only "
            f"{have / 2**30:.1f} GB is free: close other programs, choose smaller models or a smaller context"
        )


def gpu_layers_notice(requested: int, n_layer: int, offload_available: bool, what: str) -> tuple[int, str | None]:
    """(layers to request, a notice for the user or None)."""
    if requested <= 0:
        return 0, None
    if not offload_available:
        return 0, (f"{requested} GPU layers were asked for the {what}, but this llama.cpp build has no GPU "
                   "support: running on the CPU")
    if requested > n_layer + 1:  # + 1: the output layer
        return n_layer + 1, f"the {what} has {n_layer} layers: offloading all of them (asked for {requested})"
    return requested, None
