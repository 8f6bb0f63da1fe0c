"""`ngram`: candidates at zero model cost, from three sources.

* the conversation (source "ngram"): a suffix index over the prompt and everything
  generated (engine/drafters/suffix_tree.py);
* the user's history (source "history"): the same structure over earlier prompts and
  replies (engine/drafters/history.py);
* Token Recycling (source "recycle"): the target's own earlier top-k successors
  (engine/drafters/ngram.py).

As in SuffixDecoding (arXiv 2411.04975) a suffix source proposes the most frequent
continuations of its longest match, at most `SPEC_FACTOR × match length` tokens,
none whose path frequency is below `MIN_TOKEN_PROB`.  Each edge carries a learned
acceptance rate keyed by source, effective match length and how dominant the
continuation was, so the cost rule downstream verifies long spans only where a
long, frequent match has earned it: on a compute-bound CPU a verified token costs
0.5–0.9 of a plain step (DESIGN §2).
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.decoding.drafter import DraftRequest, StepOutcome
from engine.decoding.tree import HISTORY, NGRAM, RECYCLE, ROOT, Tree
from engine.drafters.history import SpeculationHistory
from engine.drafters.learning import PairKnowledge, match_bucket
from engine.drafters.ngram import RecyclingTable
from engine.drafters.suffix_tree import SuffixIndex
from engine.settings import SpecSettings

MIN_P = 0.05  # candidates below this estimate are never worth a verified position
MIN_TOKEN_PROB = 0.1  # SuffixDecoding's min_token_prob: rarer continuations are dropped
SPEC_FACTOR = 1.0  # a match of m tokens proposes at most SPEC_FACTOR * m
MAX_SPAN = 48  # longest model-free continuation (llama.cpp's ngram-simple drafts up to 48)
CONV_KEY_LEN = 2  # shortest conversation match looked at (the rate table decides whether it pays)
CONV_MAX_DEPTH = 64
RECYCLE_WIDTH = (3, 2, 1)  # successors taken at depth 1, 2, 3


def dominance(step_freq: float) -> str:
    """How much of the matched occurrences continued this way: 'a' all (a copy),
    'm' most, 's' some."""
    return "a" if step_freq >= 0.99 else "m" if step_freq >= 0.5 else "s"


class CandidateStage:
    """The model-free candidate source, shared by `ngram`, `staged` and `auto`."""

    def __init__(self, knowledge: PairKnowledge, history: SpeculationHistory | None = None) -> None:
        self.knowledge = knowledge
        self.conversation = SuffixIndex(key_len=CONV_KEY_LEN, max_depth=CONV_MAX_DEPTH)
        self.history = history
        self.recycling = RecyclingTable()

    def candidates(self, stream: list[int], max_len: int = MAX_SPAN) -> Tree:
        self._sync(stream)
        tree = Tree()
        self._suffix(tree, self.conversation, stream, NGRAM, "conv", max_len)
        if self.history is not None and len(self.history):
            self._suffix(tree, self.history.index, stream, HISTORY, "hist", max_len)
        self._recycled(tree, ROOT, stream[-1], 1.0, 0)
        return tree

    def _sync(self, stream: Sequence[int]) -> None:
        """Follow the token stream; a stream that diverged (another conversation,
        edited history) rebuilds."""
        index = self.conversation
        n = index.n
        if len(stream) < n or (n and int(stream[n - 1]) != int(index.tokens[n - 1])):
            index.clear()
            n = 0
        index.extend(stream[n:])

    def _suffix(self, tree: Tree, index: SuffixIndex, stream: list[int], source: str, kind: str,
                max_len: int) -> None:
        match = index.match(stream)
        if match is None:
            return
        cands = index.speculate(match, min(max_len, int(SPEC_FACTOR * match.length)), MIN_TOKEN_PROB)
        rates = self.knowledge.rates
        rate_of: dict[str, float] = {}
        node_of: list[int | None] = []  # tree node of each candidate (None: dropped)
        p_of: list[float] = []
        depth_of: list[int] = []
        for c in cands:
            parent = ROOT if c.parent < 0 else node_of[c.parent]
            depth = 1 if c.parent < 0 else depth_of[c.parent] + 1
            depth_of.append(depth)
            if parent is None:
                node_of.append(None)
                p_of.append(0.0)
                tree.note_ignored(source)
                continue
            p_parent = 1.0 if c.parent < 0 else p_of[c.parent]
            freq_parent = 1.0 if c.parent < 0 else cands[c.parent].prob
            # Once depth-1 tokens of the copy were accepted, the text matched
            # length + depth - 1 tokens: acceptance is learned per effective match.
            key = f"{kind}:e{match_bucket(match.length + depth - 1)}:{dominance(c.prob / freq_parent)}"
            if key not in rate_of:
                rate_of[key] = rates.rate(key)
            p = p_parent * rate_of[key]
            if p < MIN_P:
                node_of.append(None)
                p_of.append(0.0)
                tree.note_ignored(source)
                continue
            node_of.append(tree.add(parent, c.token, source, p, info={"key": key}))
            p_of.append(p)

    def _recycled(self, tree: Tree, parent: int, token: int, p_parent: float, depth: int) -> None:
        if depth >= len(RECYCLE_WIDTH):
            return
        succ = self.recycling.get(token)
        if succ is None:
            return
        for rank, tok in enumerate(succ[: RECYCLE_WIDTH[depth]]):
            key = f"recycle:r{rank}:d{depth}"
            p = p_parent * self.knowledge.rates.rate(key)
            if p < MIN_P:
                tree.note_ignored(RECYCLE)
                continue
            node = tree.add(parent, int(tok), RECYCLE, p, info={"key": key})
            self._recycled(tree, node, int(tok), p, depth + 1)

    def learn(self, outcome: StepOutcome) -> None:
        """Keep the target's top-k successors at every verified position."""
        tree, logits = outcome.tree, outcome.logits
        self.recycling.learn(outcome.root, logits[0])
        for i in outcome.accepted:
            self.recycling.learn(tree.nodes[i].token, logits[i + 1])


class NgramDrafter:
    """Needs no model: nothing to prefill."""

    name = "ngram"

    def __init__(self, spec: SpecSettings, knowledge: PairKnowledge,
                 history: SpeculationHistory | None = None) -> None:
        self.spec = spec
        self.knowledge = knowledge
        self.stage = CandidateStage(knowledge, history)
        self.mode = "ngram"

    def propose(self, req: DraftRequest) -> Tree:
        tree = self.stage.candidates(req.stream)
        self.mode = "ngram" if len(tree) else "plain"
        return tree.keep(tree.best(min(self.spec.budget, req.max_nodes)))

    def observe(self, outcome: StepOutcome) -> None:
        self.stage.learn(outcome)
        self.knowledge.observe(outcome)

    def reset(self) -> None:
        self.knowledge.forget_pending()

    def prefill(self, prompt: list[int]) -> None:
        pass
