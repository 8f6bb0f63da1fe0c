"""`tree` and `c2t`: dynamic draft trees.

`tree` — EAGLE-2 (arXiv 2406.16858) expansion by cumulative draft probability,
then OPT-Tree's (arXiv 2406.17276) choice of the nodes that maximise the expected
accepted length, sum of P(v), under the node budget.

`c2t` — the same tree, with P(v) predicted by the C2T classifier (arXiv
2502.13652) from joint probability, parent entropy and depth, and candidates
below `prune_threshold` dropped before they cost a draft decode or a verified
position.
"""

from __future__ import annotations

from engine.decoding.drafter import DraftRequest, StepOutcome
from engine.decoding.tree import ROOT, Tree
from engine.drafters.draft_model import TIP, DraftModel
from engine.drafters.grow import Frontier, grow
from engine.drafters.learning import PairKnowledge
from engine.settings import SpecSettings

C2T_PRUNE = 0.08
MAX_LEAVES = 15  # the target context's free sequence ids


class DynamicTreeDrafter:
    def __init__(
        self, dm: DraftModel, spec: SpecSettings, knowledge: PairKnowledge, *, classifier: bool
    ) -> None:
        self.dm = dm
        self.spec = spec
        self.knowledge = knowledge
        self.use_classifier = classifier
        self.name = "c2t" if classifier else "tree"
        self.mode = "draft"

    def propose(self, req: DraftRequest) -> Tree:
        tree = Tree()
        row = self.dm.sync(req.stream)[0]
        scorer = self.knowledge.classifier if self.use_classifier else None
        budget = min(self.spec.budget, req.max_nodes)
        sampled = not req.params.greedy
        grow(
            tree, self.dm, [Frontier(ROOT, TIP, row, 0.0, 0)],
            params=req.params, rng=req.rng, k=self.spec.top_k_children, beam=self.spec.beam,
            max_depth=self.spec.max_depth, scorer=scorer,
            min_score=C2T_PRUNE if self.use_classifier else 0.0,
            keep_going=lambda t, chosen: len(t) < 4 * budget,
            # Sampled draws are verified by multi-step speculative sampling, which
            # forbids pruning them afterwards: build them within the limits.
            sample=sampled, max_nodes=budget if sampled else 1 << 30, max_leaves=MAX_LEAVES,
            replacement=self.spec.draws == "with",
        )
        return tree if sampled else tree.keep(tree.best(budget))

    def observe(self, outcome: StepOutcome) -> None:
        self.dm.settle([outcome.tree.nodes[i].token for i in outcome.accepted])
        self.knowledge.observe(outcome)

    def reset(self) -> None:
        self.knowledge.forget_pending()

    def prefill(self, prompt: list[int]) -> None:
        self.dm.prefill(prompt[:-1])
