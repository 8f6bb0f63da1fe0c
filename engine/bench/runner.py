"""The benchmark loop: every arm on every prompt, interleaved.

A later turn of a multi-turn question gets the conversation so far, its earlier
turns answered by plain greedy decoding (engine.bench.history): the plain arm's
reply to the earlier turn when it just ran, the same for every arm.

Per prompt the arms run one after another, in an order rotated by one each
prompt, so slow drifts of the machine (thermal, other load) hit every arm alike
and no arm always runs first.  One short warm-up generation per Tandem arm is
run before and excluded.  After each prompt, every arm's output is checked
against plain decoding's (engine.bench.equivalence) and mismatches are printed
at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.bench.engine_arm import ENGINE_KINDS, EngineArms
from engine.bench.equivalence import MISMATCH, NEAR, check_runs
from engine.bench.history import Histories, plain_answerer
from engine.bench.lookup_arm import run_lookup
from engine.bench.peer_arm import PEER_KINDS, check_spec, run_peer
from engine.bench.results import ArmSpec, RunResult
from engine.bench.suites import BenchPrompt
from engine.errors import TandemError

LOOKUP_KIND = "lcp-lookup"
WARMUP_TOKENS = 16


@dataclass
class BenchOptions:
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    peer_dir: Path | None = None
    repeats: int = 1  # runs per (prompt, arm); the fastest counts: contention only ever adds time


def check_arms(arms: Sequence[ArmSpec], opts: BenchOptions) -> None:
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise TandemError(f"an arm is listed twice: {' '.join(names)}")
    for a in arms:
        kinds = (*ENGINE_KINDS, LOOKUP_KIND, *PEER_KINDS)
        if a.kind not in kinds:
            raise TandemError(f"unknown arm {a.name!r}: choose from {', '.join(kinds)}")
        if a.kind in PEER_KINDS and opts.peer_dir is None:
            raise TandemError(f"arm {a.name} needs --peer-llama-cpp DIR (build it with scripts/build_peer_llama.sh)")
        if a.kind in PEER_KINDS:
            try:
                check_spec(a)
            except ValueError as exc:
                raise TandemError(f"arm {a.name}: {exc}") from exc
    if "plain" not in names:
        raise TandemError("the plain arm is the reference for speed and output: keep it in --arms")


def run_bench(
    engine, prompts: Sequence[BenchPrompt], arms: Sequence[ArmSpec], opts: BenchOptions,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> list[RunResult]:
    check_arms(arms, opts)
    started = time.perf_counter()
    # Measured once up front, so no arm's first run pays for it (auto needs the curve).
    engine.cost_model()
    engine.baseline_tps()
    runner = EngineArms(engine)
    histories = Histories(plain_answerer(engine, opts.max_tokens))
    greedy = opts.temperature <= 0
    names = [a.name for a in arms]
    try:
        results: list[RunResult] = []
        warm = False
        for i, prompt in enumerate(prompts):
            prepared = prepare(engine, histories, prompt, opts.max_tokens, log)
            if prepared is None:
                continue
            tokens, text = prepared
            if not warm:
                for arm in arms:
                    if arm.kind in ENGINE_KINDS:
                        runner.run(arm, prompt, tokens, max_tokens=min(WARMUP_TOKENS, opts.max_tokens),
                                   temperature=opts.temperature, seed=opts.seed)
                warm = True
                log(f"setup (cost curve, baseline, warm-up) took {time.perf_counter() - started:.0f} s")
            tries: dict[str, list[RunResult]] = {a.name: [] for a in arms}
            for rep in range(max(1, opts.repeats)):
                k = (i + rep) % len(arms)
                for arm in [*arms[k:], *arms[:k]]:
                    r = _run_one(engine, runner, arm, prompt, tokens, text, opts)
                    r.turn = prompt.turn
                    tries[arm.name].append(r)
            done = [fastest(tries[a.name]) for a in arms]
            check_runs(done, engine.target_model, greedy=greedy)
            plain = next(r for r in done if r.arm == "plain")
            if greedy and plain.ok:
                histories.remember(prompt, plain.text)  # the history of this question's next turn
            for r in sorted(done, key=lambda r: names.index(r.arm)):
                log(f"[{i + 1}/{len(prompts)}] {progress_line(r)}")
                if r.check and r.check["status"] == MISMATCH:
                    log(f"!!! MISMATCH: {r.arm} on {r.prompt_id}: {r.check['detail']} "
                        f"(plain margin {r.check['margin']}) — speculation changed the output")
            results.extend(done)
        if not results:
            raise TandemError("no prompt fits the context")
        if histories.generated:
            log(f"earlier turns answered by plain decoding outside the runs: {', '.join(histories.generated)}")
        return results
    finally:
        runner.close()
        engine.target.truncate(0)
        if engine.draft is not None:
            engine.draft.truncate(0)


def prepare(engine, histories: Histories, prompt: BenchPrompt, max_tokens: int,
            log: Callable[[str], None]) -> tuple[list[int], str] | None:
    """(tokens, rendered text) of the conversation up to `prompt`, or None when it
    does not fit the context with `max_tokens` to spare."""
    messages = histories.conversation(prompt)
    tokens = engine.chat_tokens(messages)
    if len(tokens) + max_tokens + 16 > engine.target.n_ctx:
        log(f"skipping {prompt.id}: {len(tokens)} prompt tokens + {max_tokens} do not fit the context")
        return None
    return tokens, engine.template.render(messages, add_generation_prompt=True)


def fastest(runs: list[RunResult]) -> RunResult:
    """The run that got the machine most to itself; the others are noted in its extra."""
    ok = [r for r in runs if r.ok]
    best = max(ok, key=lambda r: r.tokens_per_s or 0.0) if ok else runs[0]
    if len(runs) > 1:
        best.extra["repeats_tokens_per_s"] = [r.tokens_per_s for r in runs]
    return best


def _prefix_chars(model):
    def count(text: str, n: int) -> int:
        """Characters of `text` that its first n tokens spell (retokenized: a peer's
        output is text, and the target's tokenizer gives back its tokens)."""
        head = b"".join(model.token_bytes(t) for t in model.tokenize(text)[:n])
        return len(head.decode("utf-8", "ignore"))

    return count


def _run_one(engine, runner: EngineArms, arm: ArmSpec, prompt: BenchPrompt, tokens: list[int], text: str,
             opts: BenchOptions) -> RunResult:
    if arm.kind in ENGINE_KINDS:
        return runner.run(arm, prompt, tokens, max_tokens=opts.max_tokens, temperature=opts.temperature,
                          seed=opts.seed, record_margins=arm.kind == "plain")
    load = engine.load_settings
    if arm.kind == LOOKUP_KIND:
        return run_lookup(arm, prompt, tokens, model=load.target, threads=engine.threads, n_ctx=engine.target.n_ctx,
                          max_tokens=opts.max_tokens, temperature=opts.temperature, seed=opts.seed)
    r = run_peer(arm, prompt, text, len(tokens), bin_dir=opts.peer_dir, target=load.target, draft=load.draft,
                 threads=engine.threads, n_ctx=engine.target.n_ctx, max_tokens=opts.max_tokens,
                 temperature=opts.temperature, seed=opts.seed, prefix_chars=_prefix_chars(engine.target_model))
    return r


def progress_line(r: RunResult) -> str:
    if not r.ok:
        return f"{r.prompt_id} · {r.arm}: {r.error}"
    tps = r.tokens_per_s or 0.0
    verdict = ""
    if r.check:
        verdict = {MISMATCH: " MISMATCH", NEAR: " near-tie"}.get(r.check["status"], "")
    tau = f", tau {r.n_tokens / r.steps:.2f}" if r.steps else ""
    return f"{r.prompt_id} · {r.arm}: {r.n_tokens} tokens, {tps:.1f} tok/s{tau}{verdict}"
