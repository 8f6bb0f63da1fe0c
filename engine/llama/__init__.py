"""The llama.cpp layer: the C-API wrapper (models, contexts, batches, KV cache), the
LanguageModel interface the decoder drives, detokenizer, chat template, build flags,
thread policy and the GGUF check run before llama.cpp sees a file.

Imports only `engine.errors`: it is the bottom of the engine."""
