"""`auto` on a compute-bound CPU's cost curve: long spans of long matches, nothing else."""

from __future__ import annotations

import numpy as np

from engine.decoding.costmodel import CostCurve, CostModel
from engine.decoding.drafter import DraftRequest
from engine.drafters.history import SpeculationHistory
from engine.drafters.learning import PairKnowledge
from engine.drafters.staged import StagedDrafter
from engine.settings import SamplingParams, SpecSettings

# DESIGN §2's table for the 1.5B target on this 2-core CPU (ms): a verified token costs 0.5-0.9 of a step
CPU = CostModel(CostCurve([1, 2, 3, 4, 6, 8, 12, 16, 32],
                          [x / 1000 for x in (35, 60, 80, 96, 136, 226, 281, 266, 425)]))
# an H100's: verification nearly free
GPU = CostModel(CostCurve([1, 4, 16, 32], [0.00176, 0.0028, 0.00454, 0.008]))


def propose(cost: CostModel, stream: list[int], history: SpeculationHistory | None = None):
    drafter = StagedDrafter(None, SpecSettings(mode="auto"), PairKnowledge(None), cost=cost, history=history)
    return drafter.propose(DraftRequest(stream, SamplingParams(), np.random.default_rng(0), 511))


def text(n: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(100, 5000, n).tolist()


def test_cpu_verifies_a_long_copy_as_a_long_span():
    code = text(200, 1)
    tree = propose(CPU, [*text(50, 2), *code, *text(5, 3), *code[:40]])  # the reply is re-typing pasted code
    assert len(tree) >= 16
    assert [n.token for n in tree.nodes][:16] == code[40:56]
    assert {n.source for n in tree.nodes} == {"ngram"}


def test_cpu_speculates_nothing_on_a_short_match():
    stream = [*text(300, 4), 7, 8, 9, *text(20, 5), 7, 8]
    assert len(propose(CPU, stream)) == 0


def test_gpu_takes_the_short_match_the_cpu_refuses():
    stream = [*text(300, 4), 7, 8, 9, 10, 11, *text(20, 5), 7, 8, 9]
    assert len(propose(CPU, stream)) == 0
    assert len(propose(GPU, stream)) >= 1


def test_history_copy_is_proposed_on_the_cpu_when_long():
    earlier = text(120, 6)
    h = SpeculationHistory(None)
    h.add(earlier)
    tree = propose(CPU, [*text(30, 7), *earlier[:32]], h)
    assert [n.token for n in tree.nodes][:8] == earlier[32:40]
    assert {n.source for n in tree.nodes} == {"history"}
