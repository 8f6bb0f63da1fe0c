"""A thin, Qt-free layer over llama-cpp-python's low-level C API.

Why not the high-level `Llama` class: it owns one sequence and no `n_seq_max` /
`kv_unified`, which tree verification needs (DESIGN §2).  This module only
wraps C calls; the KV bookkeeping for trees lives in engine/llama/lm.py.

Over 400 lines on purpose: it is one C API's wrapper (model, context, batch, logits,
KV calls, logging, shutdown order), each part a few lines that only make sense next to
the others; the decoding logic stays out of it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path

# When llama.cpp aborts (GGML_ASSERT) its handler runs gdb or lldb on the dying process:
# seconds of hang and a screenful of backtrace for an end user.  ggml reads this
# variable at abort time; TANDEM_LLAMA_BACKTRACE=1 keeps the backtrace for debugging.
if os.environ.get("TANDEM_LLAMA_BACKTRACE") == "1":
    os.environ.pop("GGML_NO_BACKTRACE", None)
else:
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")

import llama_cpp as C
import numpy as np

from engine.errors import EngineError, ModelFileError
from engine.llama.build_flags import cpu_reports_amx

# ---------------------------------------------------------------- logging

# llama.cpp is chatty on stderr.  Keep its recent warnings and errors so a failure
# can say what llama.cpp said, and print nothing unless TANDEM_LLAMA_LOG is set.
# Levels are ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continues the last line.
_WARN, _ERROR, _CONT = 3, 4, 5
_recent_log: deque[tuple[int, str]] = deque(maxlen=40)
_last_level = 0


@C.llama_log_callback
def _log_callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    global _last_level
    if level == _CONT:
        level = _last_level
    _last_level = level
    line = text.decode("utf-8", "replace")
    if level >= _WARN and line.strip():
        _recent_log.append((level, line.strip()))
    if os.environ.get("TANDEM_LLAMA_LOG"):
        print(line, end="", flush=True, file=__import__("sys").stderr)


_init_lock = threading.Lock()
_initialized = False


# Everything still open when the interpreter exits, freed by _shutdown while Python
# (and the CUDA runtime) are still whole.
_open: weakref.WeakSet = weakref.WeakSet()


def init_backend() -> None:
    global _initialized
    with _init_lock:
        if not _initialized:
            C.llama_log_set(_log_callback, ctypes.c_void_p(0))
            C.llama_backend_init()
            atexit.register(_shutdown)
            _initialized = True


def _shutdown() -> None:
    """At interpreter exit: free contexts, then models, then hand logging back to
    llama.cpp.  ggml's backends (CUDA's above all) log from C++ static destructors,
    which run after Python is finalized; a Python log callback still registered then
    is a call into a dead interpreter, the segfault seen at exit on CUDA."""
    for obj in sorted(_open, key=lambda o: isinstance(o, LlamaModel)):  # contexts before models
        with contextlib.suppress(Exception):
            obj.close()
    C.llama_log_set(C.llama_log_callback(), ctypes.c_void_p(0))  # NULL: llama.cpp's own stderr logger


def last_llama_error() -> str:
    """What llama.cpp said went wrong since the last call was started: its first
    error-level line (the cause; later ones say only "failed to load"), else its last
    warning, never an info line."""
    errors = [line for level, line in _recent_log if level == _ERROR]
    if errors:
        return errors[0]
    warnings = [line for level, line in _recent_log if level == _WARN]
    return warnings[-1] if warnings else "no message from llama.cpp"


def system_info() -> str:
    init_backend()
    return C.llama_print_system_info().decode()


def supports_gpu_offload() -> bool:
    """Whether layers can go to a GPU of this machine.  llama.cpp's own answer is also
    yes for a CPU build with the RPC backend (remote devices count), which says
    nothing about `--gpu-layers` here."""
    init_backend()
    from engine.llama.rpc import local_devices

    return bool(C.llama_supports_gpu_offload()) and bool(local_devices())


def amx_compiled_in() -> bool:
    return "AMX" in system_info()


def needs_amx_fallback() -> bool:
    """The AMX matmul kernel crashes on the first decode on CPUs reporting AMX
    (DESIGN §2).  Only builds that compiled it in are affected; skipping the
    extra (repacked) buffer types keeps llama.cpp off that kernel."""
    return amx_compiled_in() and cpu_reports_amx()


# ---------------------------------------------------------------- model


class LlamaModel:
    """Weights plus vocabulary.  Several contexts may share one model."""

    def __init__(self, path: str | Path, *, n_gpu_layers: int = 0, vocab_only: bool = False,
                 guarded: bool = True, use_extra_bufts: bool | None = None, devices: int | None = None) -> None:
        """`guarded=False` skips the child-process trial load (load_guard.py): only the
        child itself, which is the trial, passes it.  `devices`: address of a
        NULL-terminated ggml device array (engine/llama/rpc.py) the offloaded layers go
        to, instead of every local GPU."""
        init_backend()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"model file not found: {self.path}")
        # llama.cpp must never parse a file that fails the defensive check, and must
        # not abort this process on one the check could not judge
        from engine.llama import load_guard
        from engine.llama.gguf_check import check

        self.gguf = check(self.path)
        if guarded:
            load_guard.ensure_loadable(self.path)
        params = C.llama_model_default_params()
        params.n_gpu_layers = int(n_gpu_layers)
        params.vocab_only = vocab_only
        if devices is not None:
            params.devices = devices
        params.use_extra_bufts = not needs_amx_fallback() if use_extra_bufts is None else use_extra_bufts
        self.uses_extra_bufts = bool(params.use_extra_bufts)
        _recent_log.clear()
        self._model = C.llama_model_load_from_file(str(self.path).encode(), params)
        if not self._model:
            raise ModelFileError(f"llama.cpp could not load {self.path.name}: {last_llama_error()}: {self.path}")
        _open.add(self)
        self._vocab = C.llama_model_get_vocab(self._model)
        self.n_vocab = int(C.llama_vocab_n_tokens(self._vocab))
        self.n_ctx_train = int(C.llama_model_n_ctx_train(self._model))
        self.n_layer = int(C.llama_model_n_layer(self._model))
        self.n_gpu_layers = int(n_gpu_layers)
        self._piece_cache: dict[int, bytes] = {}
        self._eog = np.array([bool(C.llama_vocab_is_eog(self._vocab, t)) for t in range(self.n_vocab)])

    # -- metadata

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = C.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            C.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    @property
    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        C.llama_model_desc(self._model, buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    @property
    def size_bytes(self) -> int:
        return int(C.llama_model_size(self._model))

    @property
    def chat_template(self) -> str | None:
        return self.meta("tokenizer.chat_template")

    # -- vocabulary

    @property
    def vocab_type(self) -> int:
        return int(C.llama_vocab_type(self._vocab))

    @property
    def bos(self) -> int:
        return int(C.llama_vocab_bos(self._vocab))

    @property
    def eos(self) -> int:
        return int(C.llama_vocab_eos(self._vocab))

    @property
    def add_bos(self) -> bool:
        return bool(C.llama_vocab_get_add_bos(self._vocab))

    @property
    def add_eos(self) -> bool:
        return bool(C.llama_vocab_get_add_eos(self._vocab))

    def token_text(self, token: int) -> bytes:
        """The token's text as stored in the vocabulary (for compatibility checks)."""
        if not 0 <= token < self.n_vocab:  # llama.cpp throws through its C API (abort)
            return b""
        return C.llama_vocab_get_text(self._vocab, token) or b""

    def is_eog(self, token: int) -> bool:
        return bool(self._eog[token])

    @property
    def eog_mask(self) -> np.ndarray:
        return self._eog

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (C.llama_token * cap)()
        n = C.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (C.llama_token * cap)()
            n = C.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            raise EngineError(f"tokenization failed for {len(data)} bytes of text")
        return list(buf[:n])

    def token_bytes(self, token: int) -> bytes:
        """Raw bytes of one token.  llama-cpp-python's helper uses a 32-byte buffer and
        silently drops longer pieces; retry with the size llama.cpp asks for."""
        cached = self._piece_cache.get(token)
        if cached is not None:
            return cached
        if not 0 <= token < self.n_vocab:  # e.g. LLAMA_TOKEN_NULL for a model without BOS: llama.cpp would abort
            return b""
        buf = ctypes.create_string_buffer(64)
        n = C.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = C.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        piece = buf.raw[: max(n, 0)]
        self._piece_cache[token] = piece
        return piece

    def close(self) -> None:
        if getattr(self, "_model", None):
            C.llama_model_free(self._model)
            self._model = None
            _open.discard(self)

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        with contextlib.suppress(Exception):
            self.close()

    @property
    def handle(self):
        return self._model


# ---------------------------------------------------------------- context


class LlamaContext:
    """One llama.cpp context: a unified KV cache shared by up to `n_seq_max`
    sequences, a reusable batch, and logits exposed as numpy views."""

    def __init__(
        self,
        model: LlamaModel,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        n_seq_max: int = 16,
        n_batch: int = 512,
    ) -> None:
        self.model = model
        threads = n_threads or default_threads()
        params = C.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.kv_unified = True  # tree attention needs cells shared across sequences
        params.n_threads = threads
        params.n_threads_batch = n_threads_batch or threads
        params.no_perf = True
        # Explicit, not AUTO: flash attention changes the numbers enough to flip
        # greedy tokens (seen at a top-2 margin of 6), and AUTO resolves differently
        # per build.  On the CPU it is not faster here; GPU builds keep AUTO.
        gpu = supports_gpu_offload()
        params.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_AUTO if gpu else C.LLAMA_FLASH_ATTN_TYPE_DISABLED
        # The abort callback is a Python call llama.cpp makes between graph nodes (dozens
        # per decode): installed only while a long prompt is being watched (watch()).
        self._cancel: threading.Event | None = None
        self._abort_cb = C.ggml_abort_callback(lambda _data: self._cancel is not None and self._cancel.is_set())
        self._no_abort_cb = C.ggml_abort_callback()  # NULL: llama.cpp checks before calling
        _recent_log.clear()
        self._ctx = C.llama_init_from_model(model.handle, params)
        if not self._ctx:
            raise EngineError(f"llama.cpp could not create a context of {n_ctx} tokens: {last_llama_error()}")
        _open.add(self)
        self.n_ctx = int(C.llama_n_ctx(self._ctx))
        self.n_batch = n_batch
        self.n_seq_max = n_seq_max
        self.n_threads = threads
        self.n_threads_batch = params.n_threads_batch
        self.n_vocab = model.n_vocab
        self._mem = C.llama_get_memory(self._ctx)
        self._batch = C.llama_batch_init(n_batch, 0, n_seq_max)
        self._tok = np.ctypeslib.as_array(self._batch.token, (n_batch,))
        self._pos = np.ctypeslib.as_array(self._batch.pos, (n_batch,))
        self._nseq = np.ctypeslib.as_array(self._batch.n_seq_id, (n_batch,))
        self._out = np.ctypeslib.as_array(self._batch.logits, (n_batch,))
        self._n_outputs = 0
        # numpy views of llama.cpp's logits buffer by (address, rows): the buffer moves
        # only when a decode needs more output rows than ever before
        self._views: dict[tuple[int, int], np.ndarray] = {}
        # time spent inside llama_decode (statistics: engine overhead = the rest)
        self.decode_seconds = 0.0
        self.decode_calls = 0

    def set_threads(self, n_threads: int, n_threads_batch: int | None = None) -> None:
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch or n_threads
        C.llama_set_n_threads(self._ctx, self.n_threads, self.n_threads_batch)

    # -- decoding

    def decode(
        self,
        tokens: Sequence[int],
        positions: Sequence[int],
        seq_ids: Sequence[Sequence[int]],
        outputs: Sequence[bool],
    ) -> np.ndarray:
        """Decode one batch.  Returns the logits of the tokens whose `outputs` flag is
        set, in batch order, as a view into llama.cpp's buffer: valid only until the
        next decode on this context, never copied."""
        n = len(tokens)
        if n == 0:
            raise ValueError("empty batch")
        if n > self.n_batch:
            raise ValueError(f"batch of {n} tokens exceeds n_batch={self.n_batch}")
        self._tok[:n] = tokens
        self._pos[:n] = positions
        rows = self._batch.seq_id
        for i, seqs in enumerate(seq_ids):
            self._nseq[i] = len(seqs)
            row = rows[i]
            for j, s in enumerate(seqs):
                row[j] = s
        out = self._out[:n]
        out[:] = outputs
        n_out = int(np.count_nonzero(out))
        self._batch.n_tokens = n
        _recent_log.clear()
        started = time.perf_counter()
        rc = C.llama_decode(self._ctx, self._batch)
        self.decode_seconds += time.perf_counter() - started
        self.decode_calls += 1
        if rc != 0:
            if rc == 2:
                from engine.errors import Cancelled

                raise Cancelled("decode aborted")
            what = {1: "no KV cache slot for the batch (context full)"}.get(rc, last_llama_error())
            raise EngineError(f"llama_decode failed ({rc}): {what}")
        self._n_outputs = n_out
        if n_out == 0:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        ptr = C.llama_get_logits(self._ctx)
        key = (ctypes.cast(ptr, ctypes.c_void_p).value or 0, n_out)
        view = self._views.get(key)
        if view is None:
            if len(self._views) > 64:
                self._views.clear()
            view = self._views[key] = np.ctypeslib.as_array(ptr, (n_out, self.n_vocab))
        return view

    def watch(self, cancel: threading.Event | None) -> None:
        """While `cancel` is set, decodes return early (checked by llama.cpp between
        graph nodes), so a long prompt can be stopped at once."""
        self._cancel = cancel
        C.llama_set_abort_callback(self._ctx, self._abort_cb if cancel is not None else self._no_abort_cb, None)

    # -- KV cache (all positions are absolute; -1 means open-ended)

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> None:
        C.llama_memory_seq_rm(self._mem, seq, p0, p1)

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        C.llama_memory_seq_cp(self._mem, src, dst, p0, p1)

    def seq_keep(self, seq: int) -> None:
        C.llama_memory_seq_keep(self._mem, seq)

    def seq_pos_max(self, seq: int) -> int:
        return int(C.llama_memory_seq_pos_max(self._mem, seq))

    def seq_pos_min(self, seq: int) -> int:
        return int(C.llama_memory_seq_pos_min(self._mem, seq))

    def clear(self) -> None:
        C.llama_memory_clear(self._mem, True)

    # -- saved state (llama.cpp's state API): sequence `seq`'s cache and its tokens in a file

    def save_seq(self, path: str, seq: int, tokens: list[int]) -> int:
        """Bytes written, 0 on failure."""
        arr = (C.llama_token * max(1, len(tokens)))(*tokens)
        return int(C.llama_state_seq_save_file(self._ctx, path.encode(), seq, arr, len(tokens)))

    def load_seq(self, path: str, seq: int) -> list[int] | None:
        """The tokens whose cache now fills `seq`, or None (bad or foreign file; `seq` left empty)."""
        out = (C.llama_token * self.n_ctx)()
        count = ctypes.c_size_t(0)
        read = C.llama_state_seq_load_file(self._ctx, path.encode(), seq, out, self.n_ctx, ctypes.byref(count))
        if read == 0:
            self.seq_rm(seq)
            return None
        return list(out[: count.value])

    def close(self) -> None:
        if getattr(self, "_ctx", None):
            C.llama_batch_free(self._batch)
            C.llama_free(self._ctx)
            self._ctx = None
            _open.discard(self)

    def __del__(self) -> None:  # pragma: no cover
        with contextlib.suppress(Exception):
            self.close()


def default_threads() -> int:
    """Physical cores when known: llama.cpp gains nothing from hyper-threads."""
    count = os.cpu_count() or 2
    try:
        cores = set()
        cpu = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                cpu = line.split(":")[1].strip()
            elif line.startswith("core id"):
                cores.add((cpu, line.split(":")[1].strip()))
        if cores:
            return max(1, min(len(cores), count))
    except OSError:
        pass
    return max(1, count)
