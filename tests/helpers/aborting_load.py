"""Stands in for load_guard's child process and makes llama.cpp abort for real: it
loads the vocabulary, then asks for the text of token -1, which llama.cpp looks up with
`std::vector::at` inside its C API; the exception escapes and the process aborts
(SIGABRT), as it would on a file the checks could not judge.  Imports the backend
first, so the abort runs under Tandem's GGML_NO_BACKTRACE setting like the real child."""

from __future__ import annotations

import ctypes
import sys

from engine.llama import backend

C = backend.C
backend.init_backend()
params = C.llama_model_default_params()
params.vocab_only = True
model = C.llama_model_load_from_file(sys.argv[1].encode(), params)
buf = ctypes.create_string_buffer(64)
C.llama_token_to_piece(C.llama_model_get_vocab(model), -1, buf, len(buf), 0, False)
print("ok")
