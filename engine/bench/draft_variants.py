"""Which draft is cheapest on this computer for the same acceptance?

`tandem models optimize-draft` derives the catalog's recorded recipe and measures
it against the draft as shipped; `--explore` derives every variant of
engine/models/derive.py and measures, for each:

* cost: the draft's decode time for 1 and 16 tokens (best of a few, 256 tokens of
  context: the same measurement as the cost curves `auto` sizes trees from);
* agreement: how often the draft's top-1 token equals the target's greedy token,
  teacher-forced along the target's own greedy replies to a few prompts (one
  batched decode per prompt: the rows of a chain of pending nodes).

Agreement is what acceptance becomes for a greedy draft chain; the cost per draft
token is what the chain pays for it.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.decoding.costmodel import BASE_CONTEXT, measure
from engine.llama.backend import LlamaContext, LlamaModel
from engine.llama.chat_template import ChatTemplate
from engine.llama.lm import TIP, LlamaLM
from engine.models.derive import VARIANTS, Recipe, derive

PROMPTS = (
    "Write a Python function that checks whether a string is a palindrome.",
    "Explain the difference between a list and a tuple in Python.",
    "Write a SQL query that returns the ten customers with the most orders.",
    "Write a bash one-liner that counts the lines of every .py file in a directory.",
)


@dataclass
class DraftMeasurement:
    name: str
    path: str
    size: int
    cost_1_ms: float
    cost_16_ms: float
    agreement: float | None = None
    sha256: str | None = None
    recipe: dict | None = None

    @property
    def per_token_16_ms(self) -> float:
        return self.cost_16_ms / 16

    def to_dict(self) -> dict:
        return asdict(self)


def open_lm(path: Path | str, threads: int | None, n_ctx: int = 1024) -> LlamaLM:
    model = LlamaModel(path)
    return LlamaLM(model, LlamaContext(model, n_ctx=n_ctx, n_threads=threads))


def close_lm(lm: LlamaLM) -> None:
    lm.ctx.close()
    lm.model.close()


Replies = list[tuple[list[int], list[int]]]


def greedy_replies(target: LlamaLM, prompts: tuple[str, ...] = PROMPTS, n_tokens: int = 48) -> Replies:
    """(prompt tokens, the target's greedy reply) for each prompt, plain decoding."""
    template = ChatTemplate(target.model.chat_template)
    out = []
    for text in prompts:
        prompt = target.model.tokenize(template.render([{"role": "user", "content": text}]))
        target.truncate(0)
        row = target.decode(prompt)[-1]
        reply: list[int] = []
        for _ in range(n_tokens):
            tok = int(np.argmax(row))
            reply.append(tok)
            if target.model.is_eog(tok):
                break
            row = target.decode([tok])[-1]
        target.truncate(0)
        out.append((prompt, reply))
    return out


def agreement(draft: LlamaLM, replies: Replies) -> float:
    """Fraction of reply positions where the draft's argmax is the target's token,
    given the target's text so far (teacher-forced)."""
    hits = total = 0
    for prompt, reply in replies:
        draft.truncate(0)
        n = len(reply)
        rows = draft.decode(prompt, [TIP, *range(n - 2)] if n > 1 else [], reply[:-1])
        hits += int((rows[:n].argmax(axis=1) == np.asarray(reply)).sum())
        total += n
        draft.discard()
        draft.truncate(0)
    return hits / total if total else 0.0


def measure_draft(
    name: str, path: Path, threads: int | None, replies: Replies | None, repeats: int = 5
) -> DraftMeasurement:
    lm = open_lm(path, threads)
    try:
        curve = measure(lm, lm.ctx.n_threads, sizes=(1, 16), contexts=(BASE_CONTEXT,), samples=repeats)
        agree = agreement(lm, replies) if replies else None
    finally:
        close_lm(lm)
    return DraftMeasurement(name, str(path), path.stat().st_size, 1e3 * curve.seconds[0], 1e3 * curve.seconds[1], agree)


def target_replies(target: Path, threads: int | None, cache: Path | None, report: Callable[[str], None]) -> Replies:
    """The target's greedy replies, kept in `cache` (JSON) so that variants can be
    measured in separate runs against the same text."""
    if cache is not None and cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("target") == target.name:
            return [(p, r) for p, r in data["replies"]]
    report(f"target's greedy replies to {len(PROMPTS)} prompts ...")
    # one thread: reference text only, and a busy machine stalls multi-threaded decodes
    lm = open_lm(target, 1)
    try:
        replies = greedy_replies(lm)
    finally:
        close_lm(lm)
    if cache is not None:
        cache.write_text(json.dumps({"target": target.name, "replies": replies}))
    return replies


def explore(
    source: Path,
    target: Path | None,
    *,
    threads: int | None = None,
    variants: dict[str, Recipe] | None = None,
    shipped: bool = True,
    twice: bool = False,
    replies_cache: Path | None = None,
    report: Callable[[str], None] = print,
    cancel: threading.Event | None = None,
) -> list[DraftMeasurement]:
    """Derive each variant from `source` (twice: check the bytes repeat), measure it,
    and the source as shipped first."""
    from engine.models.provision import file_sha256

    replies = target_replies(target, threads, replies_cache, report) if target is not None else None
    results = []
    if shipped:
        results.append(measure_draft("as shipped", source, threads, replies))
        results[0].sha256 = file_sha256(source)
        report(_line(results[0]))
    with tempfile.TemporaryDirectory() as tmp:
        for name, recipe in (variants or VARIANTS).items():
            dest = Path(tmp) / f"{name}.gguf"
            try:
                derive(source, dest, recipe, cancel=cancel)
            except Exception as exc:  # IQ4_NL may want an importance matrix: skip, say why
                report(f"{name}: not derived ({exc})")
                continue
            sha = file_sha256(dest, rehash=True)
            if twice:
                again = derive(source, Path(tmp) / f"{name}.again.gguf", recipe, cancel=cancel)
                sha2 = file_sha256(again, rehash=True)
                again.unlink()
                if sha2 != sha:
                    report(f"{name}: NOT deterministic ({sha[:12]} vs {sha2[:12]})")
            m = measure_draft(name, dest, threads, replies)
            m.sha256, m.recipe = sha, recipe.to_dict()
            results.append(m)
            report(_line(m))
            dest.unlink()
    return results


def _line(m: DraftMeasurement) -> str:
    agree = f"{m.agreement:.3f}" if m.agreement is not None else "–"
    return (f"{m.name:<12} {m.size / 1e6:6.0f} MB  1 token {m.cost_1_ms:6.1f} ms  16 tokens {m.cost_16_ms:6.1f} ms"
            f"  top-1 agreement {agree}")
