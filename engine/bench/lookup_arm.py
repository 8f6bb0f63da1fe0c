"""The `lcp-lookup` arm: llama-cpp-python's built-in LlamaPromptLookupDecoding,
run in a child process (engine/bench/lookup_worker.py) per prompt.

Loading the model per prompt costs about a second and is not timed; in return a
crash (Python or native) is one failed run, and the child's KV cache and logits
buffer are freed when it exits.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from engine.bench.results import ArmSpec, RunResult, children_cpu
from engine.bench.suites import BenchPrompt

TIMEOUT_S = 900
KNOWN = ("num_pred_tokens", "max_ngram_size")


def run_lookup(
    spec: ArmSpec, prompt: BenchPrompt, tokens: list[int], *,
    model: str, threads: int, n_ctx: int, max_tokens: int, temperature: float = 0.0, seed: int | None = None,
) -> RunResult:
    result = RunResult(spec.name, prompt.id, prompt.category, prompt_tokens=len(tokens))
    unknown = set(spec.params) - set(KNOWN)
    if unknown:
        result.error = f"unknown setting(s) {', '.join(sorted(unknown))} (known: {', '.join(KNOWN)})"
        return result
    # Small context: the high-level Llama keeps n_ctx x n_vocab logits with a draft model.
    ctx = min(n_ctx, ((len(tokens) + max_tokens + 64) // 256 + 1) * 256)
    req = {"model": model, "tokens": tokens, "n_ctx": ctx, "threads": threads, "max_tokens": max_tokens,
           "temperature": temperature, "seed": seed, **{k: int(v) for k, v in spec.params.items()}}
    start, cpu0 = time.perf_counter(), children_cpu()
    try:
        proc = subprocess.run([sys.executable, "-m", "engine.bench.lookup_worker"], input=json.dumps(req),
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        result.error = f"crashed: no result within {TIMEOUT_S} s"
        return result
    result.wall = time.perf_counter() - start
    # whole child, model loading included: a rough indicator only
    result.cpu_share = (children_cpu() - cpu0) / (result.wall * threads)
    data = _last_json(proc.stdout)
    if data is None:
        result.error = f"crashed: {_exit_reason(proc.returncode)}; {_tail(proc.stderr)}"
        return result
    if "error" in data:
        result.error = data["error"]
        result.extra = {"traceback": data.get("traceback", "")}
        return result
    result.tokens = data["tokens"]
    result.n_tokens = data["n_generated"]
    result.t_prefill = data["t_prefill"]
    result.prefill_tokens = data["prefill_tokens"]
    result.t_generate = data["t_generate"]
    result.steps = data["steps"]
    result.t_decode = data["t_decode"]
    result.t_verify = data["t_decode"]
    result.drafted = data["drafted"]
    result.tested = data["tested"]
    result.accepted = max(0, data["n_generated"] - data["steps"])
    result.extra = {"n_ctx": ctx, "note": "first token produced by prompt processing; generation counts the rest"}
    return result


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _tail(text: str, n: int = 3) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:]) if lines else "no message"
