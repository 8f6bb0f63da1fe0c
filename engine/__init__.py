"""Tandem's engine: models, drafting, verification, sampling, statistics, CLI (no Qt)."""

import contextlib

# llama.cpp's shared libraries have to be loaded before numpy's: with a CUDA build on
# a machine whose numpy bundles OpenBLAS, numpy first made every model load segfault
# (seen on an H100 with CUDA 13).  llama_cpp imports numpy itself, after its libraries.
# The GUI process can run without llama_cpp (tests of the views).
with contextlib.suppress(ImportError):
    import llama_cpp  # noqa: F401
