"""`chain`: llama.cpp's draft-model speculation, the reference to beat.

The draft continues the text greedily, one decode per token, up to `n_max`
tokens, and stops as soon as its top-1 probability falls below `p_min`
(llama.cpp `common/speculative.cpp`).  Under sampling each token is drawn from
the draft instead, so the verifier can use speculative sampling.
"""

from __future__ import annotations

import numpy as np

from engine.decoding.drafter import DraftRequest, StepOutcome
from engine.decoding.sampling import distribution, entropy, fast_top_k, sample
from engine.decoding.tree import DRAFT, ROOT, Tree
from engine.drafters.draft_model import TIP, DraftModel
from engine.drafters.learning import PairKnowledge
from engine.llama.lm import ContextFull
from engine.settings import SpecSettings


class ChainDrafter:
    name = "chain"

    def __init__(self, dm: DraftModel, spec: SpecSettings, knowledge: PairKnowledge) -> None:
        self.dm = dm
        self.spec = spec
        self.knowledge = knowledge
        self.mode = "draft"

    def propose(self, req: DraftRequest) -> Tree:
        tree = Tree()
        row = self.dm.sync(req.stream)[0]
        parent, parent_lm, log_joint = ROOT, TIP, 0.0
        n_max = min(self.spec.n_max, req.max_nodes)
        for depth in range(1, n_max + 1):
            if req.params.greedy:
                ids, probs, ent = fast_top_k(row, 1)
                token, q = int(ids[0]), float(probs[0])
                if q < self.spec.p_min:
                    break
                sampled = False
            else:
                qd = distribution(row, req.params)
                # Decide before drawing: a draw kept or dropped by its own value
                # would no longer be a sample from q, and the verifier relies on it.
                if float(qd.max()) < self.spec.p_min:
                    break
                token = sample(qd, req.rng)
                q, ent, sampled = float(qd[token]), entropy(qd), True
                tree.q_dist[parent] = qd
            log_joint += float(np.log(max(q, 1e-30)))
            parent = tree.add(
                parent, token, DRAFT, float(np.exp(log_joint)), q=q, sampled=sampled,
                info={"feat": (log_joint, ent, depth)},
            )
            if depth == n_max or self.dm.eog_mask[token] or self.dm.room() < 2:
                break
            base = self.dm.lm.n_pending
            try:
                row = self.dm.expand([parent_lm], [token])[0]
            except ContextFull:
                break
            parent_lm = base
        return tree

    def observe(self, outcome: StepOutcome) -> None:
        self.dm.settle([outcome.tree.nodes[i].token for i in outcome.accepted])
        self.knowledge.observe(outcome)

    def reset(self) -> None:
        self.knowledge.forget_pending()

    def prefill(self, prompt: list[int]) -> None:
        self.dm.prefill(prompt[:-1])
