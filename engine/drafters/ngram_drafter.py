"""`ngram`: candidates at zero model cost (engine/drafters/ngram.py).

Prompt-lookup continuations of the longest matching suffix, and Token
Recycling branches from the target's own earlier top-k successors.  Each edge
carries a learned acceptance rate (by match length, by successor rank), so the
tree keeps only what is likely to be accepted: always proposing 8–16 tokens
costs more than it wins on a CPU (issue 5's replay: 0.71×).
"""

from __future__ import annotations

from engine.decoding.drafter import DraftRequest, StepOutcome
from engine.decoding.tree import NGRAM, ROOT, Tree
from engine.drafters.learning import PairKnowledge
from engine.drafters.ngram import NgramIndex, RecyclingTable
from engine.settings import SpecSettings

MIN_P = 0.05  # candidates below this estimate are never worth a verified position
RECYCLE_WIDTH = (3, 2, 1)  # successors taken at depth 1, 2, 3


class NgramStage:
    """The candidate source, shared by `ngram`, `staged` and `auto`."""

    def __init__(self, knowledge: PairKnowledge) -> None:
        self.knowledge = knowledge
        self.index = NgramIndex()
        self.recycling = RecyclingTable()

    def candidates(self, stream: list[int], max_len: int) -> Tree:
        self.index.sync(stream)
        tree = Tree()
        rates = self.knowledge.rates
        for branch, cont in enumerate(self.index.continuations(max_len, branches=2)):
            p = 1.0
            parent = ROOT
            for j, tok in enumerate(cont.tokens):
                # Once j tokens of a copy were accepted, the text matched m + j tokens:
                # acceptance is learned per effective match length (and branch rank).
                key = f"lookup:b{branch}:e{min(cont.match_len + j, 16)}"
                p *= rates.rate(key)
                if p < MIN_P:
                    tree.note_ignored(NGRAM, len(cont.tokens) - j)
                    break
                parent = tree.add(parent, int(tok), NGRAM, p, info={"key": key})
        self._recycled(tree, ROOT, stream[-1], 1.0, 0)
        return tree

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
                tree.note_ignored(NGRAM)
                continue
            node = tree.add(parent, int(tok), NGRAM, p, info={"key": key})
            self._recycled(tree, node, int(tok), p, depth + 1)

    def learn(self, outcome: StepOutcome) -> None:
        """Keep the target's top-k successors at every verified position."""
        tree, logits = outcome.tree, outcome.logits
        self.recycling.learn(outcome.root, logits[0])
        for i in outcome.accepted:
            self.recycling.learn(tree.nodes[i].token, logits[i + 1])

    def reset(self) -> None:
        """A new reply: the index follows the stream by itself (and rebuilds when the
        conversation changed); the target's successor lists stay useful."""


class NgramDrafter:
    """Needs no model: nothing to prefill."""

    name = "ngram"

    def __init__(self, spec: SpecSettings, knowledge: PairKnowledge) -> None:
        self.spec = spec
        self.knowledge = knowledge
        self.stage = NgramStage(knowledge)
        self.mode = "ngram"

    def propose(self, req: DraftRequest) -> Tree:
        tree = self.stage.candidates(req.stream, max_len=self.spec.n_max)
        self.mode = "ngram" if len(tree) else "plain"
        return tree.keep(tree.best(min(self.spec.budget, req.max_nodes)))

    def observe(self, outcome: StepOutcome) -> None:
        self.stage.learn(outcome)
        self.knowledge.observe(outcome)

    def reset(self) -> None:
        self.knowledge.forget_pending()

    def prefill(self, prompt: list[int]) -> None:
        pass
