"""Interpreter exit with llama.cpp objects still open: they are freed (contexts
before models) while Python is whole, and llama.cpp's logging is handed back to
its own C logger, so nothing calls into Python after it is finalized (the
segfault at exit seen on a CUDA build; a CPU build never logs that late, so this
checks the mechanism, not the crash)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_open_models_and_contexts_are_freed_at_exit_in_order(tiny_gguf):
    script = textwrap.dedent(f"""
        import atexit
        from engine.llama import backend
        from engine.llama.backend import LlamaContext, LlamaModel
        from engine.llama.lm import LlamaLM

        order = []
        for cls in (LlamaContext, LlamaModel):
            def logged(self, close=cls.close, name=cls.__name__):
                if getattr(self, "_ctx", None) or getattr(self, "_model", None):
                    order.append(name)
                close(self)
            cls.close = logged
        # registered before the backend's own handler, so it runs after it (last in, first out)
        atexit.register(lambda: print("freed:", order, "open:", len(backend._open)))
        model = LlamaModel({str(tiny_gguf)!r})
        lm = LlamaLM(model, LlamaContext(model, n_ctx=64, n_threads=1))
        lm.decode([1, 2, 3])
        assert len(backend._open) == 2
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "freed: ['LlamaContext', 'LlamaModel'] open: 0" in run.stdout
