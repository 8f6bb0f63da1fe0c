"""Tree attention on the real target: every node of a random tree, decoded in one
batch, sees exactly its ancestors.  Batched and single-token kernels differ by
noise (DESIGN §2), so rows are compared with that tolerance and by argmax away
from near-ties; a wrong mask would differ by whole logits everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from engine.llama.backend import LlamaContext
from engine.llama.lm import TIP, LlamaLM

pytestmark = [pytest.mark.models, pytest.mark.slow]

NOISE = 1.0


def test_random_tree_matches_sequential_paths(qwen_engine) -> None:
    model = qwen_engine.target_model
    prompt = model.tokenize("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n")
    vocab_sample = model.tokenize(" if n < 2: return n\n    return fibonacci(n - 1) + fibonacci(n - 2) else for while")
    rng = np.random.default_rng(7)
    parents, tokens = [], []
    for i in range(20):
        parents.append(TIP if i < 3 else int(rng.integers(-1, i)))
        tokens.append(int(rng.choice(vocab_sample)))
    lm = LlamaLM(model, LlamaContext(model, n_ctx=512, n_threads=qwen_engine.threads, n_seq_max=16))
    ref = LlamaLM(model, LlamaContext(model, n_ctx=512, n_threads=qwen_engine.threads, n_seq_max=2))
    try:
        lm.decode(prompt[:-1])
        rows = lm.decode([prompt[-1]], parents, tokens).copy()

        def path(i: int) -> list[int]:
            out = []
            while i != TIP:
                out.append(tokens[i])
                i = parents[i]
            return out[::-1]

        worst = 0.0
        for i in range(-1, len(tokens)):
            seq = prompt + (path(i) if i >= 0 else [])
            ref.truncate(0)
            ref.decode(seq[:-1])
            expected = ref.decode(seq[-1:])[0]
            got = rows[i + 1]
            worst = max(worst, float(np.abs(got - expected).max()))
            top2 = np.sort(expected)[-2:]
            if top2[1] - top2[0] > NOISE:
                assert int(np.argmax(got)) == int(np.argmax(expected)), f"node {i}"
        assert worst < NOISE, f"largest logit difference {worst:.3f}"
    finally:
        lm.ctx.close()
        ref.ctx.close()
