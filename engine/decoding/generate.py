"""The generation loop: one target pass per step, whatever the drafter.

    prefill the prompt (reusing the cached prefix)
    root = last prompt token
    repeat:
        tree = drafter.propose(...)                 # maybe empty: plain decoding
        logits = target.decode([root], tree)        # ONE llama_decode, tree attention
        path, bonus = verify(tree, logits)          # lossless (engine/decoding/verify.py)
        target.commit(path)                         # keep the accepted path in the cache
        emit path tokens + bonus; root = bonus
        drafter.observe(...)                        # sync draft cache, learn

Invariant between steps: the target's cache holds every token of the stream
except the last one (the root), which the next pass decodes first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine import faults
from engine.decoding.baseline import PlainEstimate
from engine.decoding.drafter import Drafter, DraftRequest, StepOutcome
from engine.decoding.events import DoneEvent, Event, ProgressEvent, StepEvent, TextEvent
from engine.decoding.sampling import margin
from engine.decoding.sizing import fit_to_limits
from engine.decoding.stats import ReplyStats, StepStats
from engine.decoding.tree import TARGET, Tree
from engine.decoding.verify import verify
from engine.errors import Cancelled, ContextOverflowError
from engine.llama.detokenize import Detokenizer
from engine.llama.lm import LanguageModel
from engine.settings import GenerationSettings

MAX_TREE_LEAVES = 15  # sequence ids 1..15 of a 16-sequence context
PREFILL_CHUNK = 256  # prompt tokens per decode: progress and Stop between chunks


@dataclass
class Reply:
    tokens: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    text: str = ""
    reason: str = "length"
    stats: ReplyStats = field(default_factory=ReplyStats)
    # greedy margin (top-1 minus top-2 logit) of the target row that chose each
    # token; recorded on request, for tests that compare token streams
    margins: list[float] = field(default_factory=list)


def prefill(
    target: LanguageModel,
    prompt: list[int],
    cancel: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Make the target's cache hold prompt[:-1], reusing the longest cached prefix.
    Returns how many tokens had to be decoded.  A long conversation after a restart
    takes tens of seconds here, so it goes in PREFILL_CHUNK pieces: `on_progress(done,
    total)` after each (counting the cached prefix as done), and `cancel` is honoured
    between pieces as well as inside one; the pieces already decoded stay cached."""
    if not prompt:
        raise ContextOverflowError("empty prompt")
    if len(prompt) >= target.n_ctx:
        raise ContextOverflowError(
            f"the prompt is {len(prompt)} tokens but the context holds {target.n_ctx}; "
            "shorten it or raise the context size"
        )
    target.discard()
    have = target.tokens
    n = 0
    limit = min(len(have), len(prompt) - 1)
    while n < limit and have[n] == prompt[n]:
        n += 1
    target.truncate(n)
    todo = prompt[n:-1]
    if todo:
        watch = getattr(target, "watch", None)
        if watch is not None:
            watch(cancel)
        try:
            for i in range(0, len(todo), PREFILL_CHUNK):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("prompt processing cancelled")
                piece = todo[i:i + PREFILL_CHUNK]
                target.decode(piece)
                if on_progress is not None:
                    on_progress(n + i + len(piece), len(prompt) - 1)
        finally:
            if watch is not None:
                watch(None)
    return len(todo)


def generate(
    target: LanguageModel,
    prompt: list[int],
    drafter: Drafter,
    settings: GenerationSettings,
    *,
    eog_mask: np.ndarray,
    token_bytes: Callable[[int], bytes],
    cancel: threading.Event | None = None,
    on_event: Callable[[Event], None] | None = None,
    baseline_tps: float | None = None,
    record_margins: bool = False,
    max_tree_nodes: int = 511,
    on_target_decode: Callable[[int, float], None] | None = None,
    plain: PlainEstimate | None = None,
    draft_model: str | None = None,
) -> Reply:
    params = settings.sampling
    rng = params.rng()
    reply = Reply(stats=ReplyStats(baseline_tps=baseline_tps, prompt_tokens=len(prompt),
                                   plain=plain or PlainEstimate(), draft_model=draft_model))
    detok = Detokenizer(token_bytes)
    texts: list[str] = []

    start = time.perf_counter()
    def progress(done: int, total: int) -> None:
        if on_event is not None:
            on_event(ProgressEvent("prompt", done, total))

    try:
        reply.stats.prefill_tokens = prefill(target, prompt, cancel, progress)
    except Cancelled:  # Stop while reading the prompt: a reply with nothing in it, like any stop
        reply.reason = "cancelled"
        if on_event is not None:
            on_event(DoneEvent(reply.reason, "", reply.stats.snapshot()))
        return reply
    drafter.reset()
    drafter.prefill(prompt)  # the draft's prompt processing is prompt processing, not drafting
    reply.stats.t_prefill = time.perf_counter() - start

    stream = list(prompt)
    while len(reply.tokens) < settings.max_tokens:
        if cancel is not None and cancel.is_set():
            reply.reason = "cancelled"
            break
        if target.room() < 1:
            reply.reason = "context"
            break
        t0 = time.perf_counter()
        faults.point("draft")  # inert unless TANDEM_FAULT is set (engine/faults.py)
        room = min(target.room() - 1, max_tree_nodes)
        tree = drafter.propose(DraftRequest(stream, params, rng, room))
        tree = fit_to_limits(tree, room, MAX_TREE_LEAVES)
        t1 = time.perf_counter()
        root = stream[-1]
        faults.point("verify")  # inert unless TANDEM_FAULT is set (engine/faults.py)
        logits = target.decode([root], tree.parents, tree.tokens)
        t2 = time.perf_counter()
        if on_target_decode is not None:
            on_target_decode(len(tree) + 1, t2 - t1)

        path, bonus = verify(tree, logits, params, rng, settings.spec.verify)
        target.commit(path)
        new = [tree.nodes[i].token for i in path] + [bonus]
        sources = [tree.nodes[i].source for i in path] + [TARGET]
        rows = [0] + [i + 1 for i in path]
        outcome = StepOutcome(tree, path, bonus, logits, stream + new, root, t1 - t0, t2 - t1)

        # stop at the end-of-turn token or the token limit; the cache must then
        # hold exactly the emitted stream minus its last token
        keep = len(new)
        for j, tok in enumerate(new):
            if eog_mask[tok]:
                keep = j + 1
                reply.reason = "stop"
                break
        keep = min(keep, settings.max_tokens - len(reply.tokens))
        if record_margins:
            reply.margins.extend(margin(logits[r]) for r in rows[:keep])
        drafter.observe(outcome)
        stream.extend(new[:keep])
        if len(target.tokens) > len(stream) - 1:
            target.truncate(len(stream) - 1)

        pieces = []
        for tok, src in zip(new[:keep], sources[:keep], strict=True):
            reply.tokens.append(tok)
            reply.sources.append(src)
            if eog_mask[tok]:
                continue
            text = detok.push(tok)
            if text:
                pieces.append((text, src))
                texts.append(text)
        step = step_stats(reply.stats.steps, drafter.mode, tree, path, keep, t1 - t0, t2 - t1, time.perf_counter() - t2)
        reply.stats.add(step, sources[:keep])
        if on_event is not None:  # events (and their dictionaries) only for a listener
            if pieces:
                on_event(TextEvent(pieces))
            on_event(StepEvent(step.to_dict(), reply.stats.snapshot(per_step=False)))
        if reply.reason == "stop":
            break

    tail = detok.flush()
    if tail:
        texts.append(tail)
        if on_event is not None:
            on_event(TextEvent([(tail, TARGET)]))
    reply.text = "".join(texts)
    if on_event is not None:
        on_event(DoneEvent(reply.reason, reply.text, reply.stats.snapshot(), reply.tokens, reply.sources,
                           reply.margins))
    return reply


def step_stats(
    index: int, mode: str, tree: Tree, path: list[int], emitted: int, t_draft: float, t_verify: float, t_overhead: float
) -> StepStats:
    """Counts for one step (DESIGN §4).  Accepted candidates beyond a stop are not
    emitted and are not counted as accepted."""
    if not tree.nodes and not tree.ignored:  # a plain step: nothing drafted, nothing to count
        return StepStats(index, mode, {}, {}, {}, emitted, [], [], t_draft, t_verify, t_overhead)
    tested = tree.count_by_source()
    drafted = dict(tested)
    for source, n in tree.ignored.items():
        drafted[source] = drafted.get(source, 0) + n
    accepted: dict[str, int] = {s: 0 for s in tested}
    for i in path[:emitted]:
        accepted[tree.nodes[i].source] += 1
    depth = max((n.depth for n in tree.nodes), default=0)
    reached = []
    node = -1
    for d in range(depth):
        reached.append(1 if tree.children(node) else 0)
        node = path[d] if d < len(path) else None
        if node is None:
            break
    reached += [0] * (depth - len(reached))
    took = [1 if d < min(len(path), emitted) else 0 for d in range(depth)]
    return StepStats(index, mode, drafted, tested, accepted, emitted, reached, took, t_draft, t_verify, t_overhead)

