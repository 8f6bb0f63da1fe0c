"""Child process of the `lcp-lookup` arm: llama-cpp-python's own prompt lookup
decoding (`Llama(draft_model=LlamaPromptLookupDecoding(...))`, the high-level API).

Runs in its own process because the high-level `Llama` keeps its own KV cache
and a logits buffer of n_ctx x n_vocab floats (it forces logits_all with a draft
model), and because it is reported to fail inside `Llama.eval` on 0.3.36: a
Python exception comes back as a result, a native crash as the exit status, and
the benchmark goes on either way.

Protocol: one JSON request on stdin, one JSON result on stdout.
"""

from __future__ import annotations

import json
import sys
import time
import traceback


def _fallback_params_for_amx() -> None:
    """Load with the engine's AMX workaround (DESIGN §2), so this arm runs the same
    kernels as the engine and does not crash on AMX CPUs for an unrelated reason."""
    import llama_cpp

    from engine.llama.backend import needs_amx_fallback

    if not needs_amx_fallback():
        return
    original = llama_cpp.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = False
        return p

    llama_cpp.llama_model_default_params = params
    import llama_cpp.llama as high_level

    high_level.llama_cpp.llama_model_default_params = params


def run(req: dict) -> dict:
    import llama_cpp
    from llama_cpp import Llama
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    _fallback_params_for_amx()
    tokens: list[int] = req["tokens"]
    llm = Llama(
        model_path=req["model"], n_ctx=req["n_ctx"], n_batch=512, n_ubatch=512,
        n_threads=req["threads"], n_threads_batch=req["threads"], seed=req.get("seed") or 0, verbose=False,
        draft_model=LlamaPromptLookupDecoding(
            max_ngram_size=int(req.get("max_ngram_size", 2)), num_pred_tokens=int(req.get("num_pred_tokens", 10)),
        ),
    )
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    # Count and time target passes, and the drafted tokens.
    evals: list[tuple[int, float]] = []
    inner_eval = llm.eval

    def timed_eval(batch):
        start = time.perf_counter()
        inner_eval(batch)
        evals.append((len(batch), time.perf_counter() - start))

    llm.eval = timed_eval
    drafted = [0]
    inner_draft = llm.draft_model

    def counting_draft(ids, **kw):
        out = inner_draft(ids, **kw)
        drafted[0] += len(out)
        return out

    llm.draft_model = counting_draft
    # Warm-up (excluded): the first decode of a fresh context allocates its graph.
    llm.eval(tokens[: min(8, len(tokens))])
    llm.reset()
    evals.clear()

    out: list[int] = []
    t0 = time.perf_counter()
    t_first = None
    temp = float(req.get("temperature", 0.0))
    for tok in llm.generate(tokens, temp=temp, top_k=40, top_p=0.95, min_p=0.0, repeat_penalty=1.0, reset=True):
        if t_first is None:
            t_first = time.perf_counter()
        out.append(int(tok))
        if llama_cpp.llama_vocab_is_eog(vocab, tok) or len(out) >= req["max_tokens"]:
            break
    t_end = time.perf_counter()
    n_prefill = 1 if evals else 0  # the first eval is the prompt
    gen_evals = evals[n_prefill:]
    llm.close()
    return {
        "tokens": out,
        # the first token comes out of prompt processing, as in llama.cpp's own tools
        "t_prefill": (t_first or t_end) - t0,
        "prefill_tokens": len(tokens),
        "t_generate": t_end - (t_first or t_end),
        "n_generated": max(len(out) - 1, 0),
        "steps": len(gen_evals),
        "t_decode": sum(t for _, t in gen_evals),
        "tested": sum(n - 1 for n, _ in gen_evals),
        "drafted": drafted[0],
    }


def main() -> int:
    req = json.loads(sys.stdin.read())
    try:
        result = run(req)
    except Exception as exc:
        result = {"error": f"crashed: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
