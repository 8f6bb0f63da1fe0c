"""What every drafter gets and gives.

A drafter proposes a token tree for the current step (`propose`) and learns from
what the target did with it (`observe`).  It never touches the target model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.decoding.tree import Tree
from engine.settings import SamplingParams


@dataclass
class DraftRequest:
    stream: list[int]  # every token so far; stream[-1] is the root, not yet in the target's cache
    params: SamplingParams
    rng: np.random.Generator
    max_nodes: int  # what fits in the target's cache and batch this step


@dataclass
class StepOutcome:
    tree: Tree  # the tree the target verified
    accepted: list[int]  # accepted node ids, root to deepest
    bonus: int  # the target's own token after them
    logits: np.ndarray  # target rows: [root, node 0, node 1, ...] (valid until the next decode)
    stream: list[int]  # stream after this step (accepted + bonus appended)
    root: int  # the step's root token (its target row is logits[0])
    t_draft: float = 0.0  # seconds spent drafting this step
    t_verify: float = 0.0  # seconds of the target pass


class Drafter(Protocol):
    name: str
    mode: str  # what the last proposal used, for statistics ("plain", "draft", ...)

    def propose(self, req: DraftRequest) -> Tree: ...

    def observe(self, outcome: StepOutcome) -> None: ...

    def reset(self) -> None:
        """A new reply begins (learned state is kept)."""
        ...

    def prefill(self, prompt: list[int]) -> None:
        """Process the prompt in the draft's cache, if the drafter will use one."""
        ...


class NoDrafter:
    """Plain decoding: the same loop with an empty tree."""

    name = "off"
    mode = "plain"

    def propose(self, req: DraftRequest) -> Tree:
        return Tree()

    def observe(self, outcome: StepOutcome) -> None:
        pass

    def reset(self) -> None:
        pass

    def prefill(self, prompt: list[int]) -> None:
        pass
