"""Fixed per-step policies for the replay (engine/bench/replay.py).

Each mirrors what a drafter does, with the draft decodes it would make:

* Plain: no candidates.
* Chain(n_max, p_min): llama.cpp-style draft chain (engine/drafters/chain.py):
  one catch-up decode (the draft's lag, root included) gives depth 1; each
  further token costs one single-token decode; a token whose probability falls
  below p_min is decoded-for but not drafted.
* Ngram(max_len): prompt lookup continuation, verified directly, no draft.
* NgramElseChain: the n-gram continuation when its match is long enough, else a chain.
* Staged: the n-gram continuation rides in the draft's catch-up batch; the draft
  keeps it up to its first disagreement and extends it with its own chain.

New policies: any object with `name`, `reset`, `propose`, `observe`.
"""

from __future__ import annotations

from engine.bench.replay import Proposal, StepView
from engine.bench.trace import PromptTrace


class BasePolicy:
    name = "base"

    def reset(self, trace: PromptTrace) -> None:
        pass

    def propose(self, view: StepView) -> Proposal:
        return Proposal()

    def observe(self, view: StepView, proposal: Proposal, accepted: int) -> None:
        pass


class Plain(BasePolicy):
    name = "plain"


def chain_proposal(view: StepView, n_max: int, p_min: float, prefix: list[int] | None = None) -> Proposal:
    """A draft chain after `prefix` (n-gram tokens the draft decodes in its catch-up batch)."""
    prefix = prefix or []
    toks, _, by_p_min = view.draft_chain(n_max, p_min, depth0=len(prefix) + 1)
    # Nodes the draft decoded after the catch-up batch: each drafted token, except the
    # last one when the chain ended for n_max (its successor was never needed).
    expanded = len(toks) if by_p_min else max(len(toks) - 1, 0)
    return Proposal(
        tokens=[*prefix, *toks],
        draft_batches=[view.draft_lag + len(prefix)] + [1] * expanded,
        draft_keeps=len(prefix) + expanded,
        sources=["ngram"] * len(prefix) + ["draft"] * len(toks),
    )


class Chain(BasePolicy):
    def __init__(self, n_max: int, p_min: float = 0.0) -> None:
        self.n_max, self.p_min = n_max, p_min
        self.name = f"chain n_max {n_max} p_min {p_min:g}"

    def propose(self, view: StepView) -> Proposal:
        return chain_proposal(view, self.n_max, self.p_min)


class Ngram(BasePolicy):
    def __init__(self, max_len: int, min_match: int = 1) -> None:
        self.max_len, self.min_match = max_len, min_match
        self.name = f"n-gram {max_len} tokens" + (f" (match ≥ {min_match})" if min_match > 1 else "")

    def propose(self, view: StepView) -> Proposal:
        conts = view.ngram(self.max_len)
        if not conts or conts[0][1] < self.min_match:
            return Proposal()
        toks = conts[0][0]
        return Proposal(tokens=list(toks), sources=["ngram"] * len(toks))


class NgramElseChain(BasePolicy):
    def __init__(self, max_len: int, min_match: int, n_max: int, p_min: float) -> None:
        self.ngram = Ngram(max_len, min_match)
        self.chain = Chain(n_max, p_min)
        self.name = f"n-gram {max_len} (match ≥ {min_match}) else chain {n_max}/{p_min:g}"

    def propose(self, view: StepView) -> Proposal:
        prop = self.ngram.propose(view)
        return prop if prop.tokens else self.chain.propose(view)


class Staged(BasePolicy):
    def __init__(self, max_len: int, n_max: int, p_min: float) -> None:
        self.max_len, self.n_max, self.p_min = max_len, n_max, p_min
        self.name = f"staged: n-gram {max_len} checked by draft + chain {n_max}/{p_min:g}"

    def propose(self, view: StepView) -> Proposal:
        conts = view.ngram(self.max_len)
        ng = conts[0][0] if conts else []
        kept: list[int] = []
        for d, tok in enumerate(ng, 1):  # the draft keeps n-gram tokens it would have drafted itself
            top = view.draft_top(d)
            if top is None or int(top[0][0]) != tok:
                break
            kept.append(tok)
        prop = chain_proposal(view, self.n_max, self.p_min, prefix=kept)
        prop.draft_batches[0] = view.draft_lag + len(ng)  # every n-gram token was decoded
        return prop


def default_policies() -> list[BasePolicy]:
    """The grid `tandem bench --replay` prints: issue 5's fixed policies and neighbours."""
    out: list[BasePolicy] = [Plain()]
    out += [Chain(n, p) for n in (1, 2, 3, 4, 8, 16) for p in (0.0, 0.5, 0.75, 0.9)]
    out += [Ngram(n) for n in (2, 4, 8, 16)]
    out += [Ngram(8, 3), Ngram(16, 3)]
    out += [NgramElseChain(8, 2, 4, 0.75), NgramElseChain(16, 3, 8, 0.75)]
    out += [Staged(8, 8, 0.75), Staged(16, 16, 0.75)]
    return out
