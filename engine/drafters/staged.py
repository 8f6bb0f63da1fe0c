"""`staged` and `auto`: the full design (DESIGN §3, staged speculative decoding,
Spector & Ré, arXiv 2308.04623).

Per step:
1. The model-free stage proposes continuations at zero model cost: the longest
   matches of the text in the conversation and in the user's history (suffix
   indexes with counts, SuffixDecoding) and Token Recycling.
2. The draft model checks them in the same batched decode that catches it up
   with the accepted text, so where it agrees it emits several tokens for one
   draft call; every n-gram node gets the draft's probability as a second
   opinion (C2T score).
3. The draft grows its own tree on top (EAGLE-2 levels, C2T scores).
4. The tree is cut to the budget.

`auto` is the same pipeline with costs (CAST-style cost-aware drafting): it
skips the draft model when history says the model-free candidates alone give more
tokens per second, stops growing when another draft level no longer pays for
itself, and sizes the final tree with Sequoia's rule on the measured decode-cost
curve — down to no speculation at all when nothing beats plain decoding.  On a
compute-bound CPU (a verified token costs 0.5–0.9 of a plain step) that rule keeps
only long spans of long, frequent matches, whose learned acceptance is near 1: a
model-free span may be up to MAX_SPAN tokens (the budget setting caps draft-model
trees, which cost a draft decode per level).

The cost rule predicts; `auto` also checks.  It times every whole step (from one
proposal to the next, so the engine's own bookkeeping counts), and when its last 8
active steps (n-gram stage run, speculating or not) delivered fewer tokens per second
than plain decoding, it rests: plain steps that skip the stages and their learning,
8 of them, twice as many after every probe that loses again, back to 8 after a win.
"Plain decoding" is measured live, from the single-token decodes of this reply's steps
that verified nothing (and from rest steps), never taken from the start-up curve: the
shared machine's speed moves by a third between minutes, and a stale, faster figure
made every quiet stretch look like a loss and put `auto` to rest through the very
copies it exists for.  A quiet step costs the stage's bookkeeping on top of the decode
(under 1% of a step on a CPU), so active steps lose only below 97% of plain's rate.
On a CPU this catches n-gram guesses that keep failing in text that does not repeat;
on a GPU, where a decode takes about as long as a step's Python bookkeeping (1.8 ms
vs 1.5 ms on an H100), it is what can keep `auto` near plain speed.
"""

from __future__ import annotations

import time

import numpy as np

from engine.decoding.costmodel import CostModel
from engine.decoding.drafter import DraftRequest, StepOutcome
from engine.decoding.sizing import best_size
from engine.decoding.tree import ROOT, Tree
from engine.drafters.draft_model import TIP, DraftModel
from engine.drafters.grow import Frontier, grow
from engine.drafters.history import SpeculationHistory
from engine.drafters.learning import PairKnowledge
from engine.drafters.ngram_drafter import MAX_SPAN, CandidateStage
from engine.settings import SpecSettings

NGRAM_TO_DRAFT = 12  # n-gram nodes the draft checks per step
# auto tries the draft at least this often, to keep its estimate fresh; each try
# that loses to plain decoding doubles the wait (a steep CPU cost curve makes the
# draft a loss most of the time, and a try costs a catch-up decode)
EXPLORE_FIRST, EXPLORE_MAX = 8, 128
# A try first catches the draft up on every token since its last one, and that
# catch-up is proportional to the gap: backing off does not make losing tries cheaper
# (about 11% of generation time on this CPU, measured on revision prompts).  So tries
# are paid from a credit of a share of the time generation takes, 1% at first and
# halved by every try that loses (down to 0.1%); a draft that wins is used every step,
# stays in sync, needs no credit, and resets the share.
EXPLORE_SHARE, EXPLORE_SHARE_MIN = 0.01, 0.001
# A step speculates only when the cost rule expects it to beat plain decoding by this
# much: the learned acceptance rates are estimates, and on a CPU where a verified
# token costs 0.5-0.9 of a plain step a marginal bet that misses costs more than it
# gains (code, translation and writing sat 1-4% below plain with no margin).
MIN_GAIN = 0.05
OPTIMISTIC_ACCEPTANCE = 0.95  # per drafted token, for deciding whether drafting can ever pay
JUDGE_AFTER = 8  # active steps pooled before their realized speed is compared with plain's
REST_FIRST, REST_MAX = 8, 128  # rest steps (no stage work at all) after active steps lost
TOLERANCE = 0.03  # active steps below (1 - this) x plain's rate lose
PLAIN_OVERHEAD_S = 0.0003  # the engine's own work in a plain step (README, engine overhead)


def draft_can_pay(cost: CostModel, alpha: float = OPTIMISTIC_ACCEPTANCE, longest: int = 16) -> bool:
    """Could a draft chain beat plain decoding on this machine even when its tokens
    are accepted with probability `alpha`?  One draft decode per drafted token, one
    target pass for all of them (Sequoia's rule on the measured curves).  On a CPU
    whose batched decodes cost nearly as much as single ones, it cannot."""
    if cost.draft is None:
        return False
    plain = 1.0 / cost.target(1)
    for k in range(1, longest + 1):
        expected = (1.0 - alpha ** (k + 1)) / (1.0 - alpha)
        if expected / (k * cost.draft(1) + cost.target(k + 1)) > plain:
            return True
    return False


class StagedDrafter:
    def __init__(
        self,
        dm: DraftModel | None,
        spec: SpecSettings,
        knowledge: PairKnowledge,
        *,
        cost: CostModel | None = None,
        history: SpeculationHistory | None = None,
    ) -> None:
        self.dm = dm
        self.spec = spec
        self.knowledge = knowledge
        self.cost = cost
        self.adaptive = cost is not None
        self.name = "auto" if self.adaptive else "staged"
        self.stage = CandidateStage(knowledge, history)
        self.mode = "staged"
        # auto's running picture of what a draft step yields (tokens, seconds)
        self._draft_tokens = 2.0
        self._draft_seconds = None
        self._since_draft = 0
        self._explore_every = EXPLORE_FIRST
        self._draft_viable = cost is None or draft_can_pay(cost)
        self._explore_credit = 0.0  # seconds of catch-up decoding a try may spend
        self._explore_share = EXPLORE_SHARE
        self._rest_step = False
        self.guard = RealizedRateGuard(1.0 / cost.target(1)) if cost is not None else None

    # ------------------------------------------------------------------ propose

    def propose(self, req: DraftRequest) -> Tree:
        start = time.perf_counter()
        self._rest_step = False
        if self.guard is not None:
            self.guard.step_began(start)
            if self.guard.resting():
                self.mode = "plain"
                self._rest_step = True
                return Tree()
        budget = min(self.spec.budget, req.max_nodes)
        ngram = self.stage.candidates(req.stream, max_len=MAX_SPAN if self.adaptive else self.spec.n_max)
        span_budget = min(max(budget, MAX_SPAN), req.max_nodes) if self.adaptive else budget
        if self.dm is None or not self._draft_pays(ngram, span_budget, len(req.stream)):
            self.mode = "ngram" if len(ngram) else "plain"
            return self._size(ngram, span_budget, time.perf_counter() - start)
        self.mode = "staged"
        self._since_draft = 0
        self._explore_every = EXPLORE_FIRST
        checked = ngram.keep(ngram.best(min(NGRAM_TO_DRAFT, max(budget, 1))))
        if self.dm.room() < len(checked) + len(req.stream) - len(self.dm.lm.tokens) + 1:
            checked = Tree()
        rows = self.dm.sync(req.stream, [n.parent if n.parent != ROOT else TIP for n in checked.nodes], checked.tokens)
        tree, frontier = self._score_ngram_nodes(checked, rows)
        grow(
            tree, self.dm, frontier,
            params=req.params, rng=req.rng, k=self.spec.top_k_children, beam=self.spec.beam,
            max_depth=self.spec.max_depth, scorer=self.knowledge.classifier,
            keep_going=self._keep_going(start) if self.adaptive else (lambda t, c: len(t) < 4 * budget),
        )
        return self._size(tree, budget, time.perf_counter() - start)

    def _score_ngram_nodes(self, checked: Tree, rows: np.ndarray) -> tuple[Tree, list[Frontier]]:
        """Copy the n-gram nodes with the draft's opinion of each, and return the
        frontier the draft grows from: the root and every n-gram node the draft
        agrees with (its own top token)."""
        clf = self.knowledge.classifier
        tree = Tree(ignored=dict(checked.ignored))
        frontier = [Frontier(ROOT, TIP, rows[0], 0.0, 0)]
        log_joint = {ROOT: 0.0}
        agreed = {ROOT}
        stats: dict[int, tuple[float, float, int]] = {}

        def row_stats(parent: int) -> tuple[float, float, int]:
            if parent not in stats:
                row = rows[parent + 1]
                m = float(row.max())
                z = float(np.log(np.exp(row - m, dtype=np.float32).sum())) + m
                p = np.exp(row[row > m - 12.0].astype(np.float64) - z)
                stats[parent] = (z, float(-(p * np.log(np.maximum(p, 1e-30))).sum()), int(np.argmax(row)))
            return stats[parent]

        for i, node in enumerate(checked.nodes):
            z, ent, top = row_stats(node.parent)
            lq = float(rows[node.parent + 1][node.token]) - z
            lj = log_joint[node.parent] + lq
            log_joint[i] = lj
            score = float(clf.predict(np.array([lj]), np.array([ent]), np.array([node.depth]))[0])
            info = dict(node.info)
            info["feat"] = (lj, ent, node.depth)
            j = tree.add(node.parent, node.token, node.source, max(node.p_accept, score),
                         q=float(np.exp(lq)), info=info)
            assert j == i
            if node.parent in agreed and top == node.token:
                agreed.add(i)
                frontier.append(Frontier(i, i, rows[i + 1], lj, node.depth))
        return tree, frontier

    # ------------------------------------------------------------------ costs

    def _catch_up_cost(self, stream_len: int) -> float:
        behind = max(0, stream_len - len(self.dm.lm.tokens))
        if behind <= 1:
            return 0.0
        batch = min(behind, 64)
        return behind * self.cost.draft(batch) / batch

    def _draft_pays(self, ngram: Tree, budget: int, stream_len: int) -> bool:
        if not self.adaptive:
            return True
        if not self._draft_viable:
            return False
        self._since_draft += 1
        if self._draft_seconds is None or self._since_draft >= self._explore_every:
            catch_up = self._catch_up_cost(stream_len)
            if catch_up > self._explore_credit:
                return False
            self._explore_credit -= catch_up
            return True
        _, ngram_rate = best_size(ngram, self.cost.target, 0.0, budget)
        return self._draft_tokens / self._draft_seconds > ngram_rate

    def _keep_going(self, start: float):
        cost = self.cost

        def decide(tree: Tree, chosen: list[int]) -> bool:
            spent = time.perf_counter() - start
            ids, rate = best_size(tree, cost.target, spent, self.spec.budget)
            # Optimistic value of one more level: each chosen node's best child is
            # accepted about as often as the node itself was.
            gain = sum(tree.nodes[i].p_accept for i in chosen) * 0.8
            e = 1.0 + sum(tree.nodes[i].p_accept for i in ids)
            more = (e + gain) / (spent + cost.draft(len(chosen)) + cost.target(len(ids) + 1 + len(chosen)))
            return more > rate

        return decide if cost is not None and cost.draft is not None else (lambda t, c: len(t) < 64)

    def _size(self, tree: Tree, budget: int, spent: float) -> Tree:
        if not self.adaptive:
            return tree.keep(tree.best(budget))
        ids, rate = best_size(tree, self.cost.target, spent, budget)
        if rate < (1.0 + MIN_GAIN) / (spent + self.cost.target(1)):
            ids = []
        if not ids:
            self.mode = "plain"
        return tree.keep(ids)

    # ------------------------------------------------------------------ learn

    def observe(self, outcome: StepOutcome) -> None:
        if self.guard is not None:
            quiet = not self._rest_step and len(outcome.tree) == 0
            self.guard.step_ended(self._rest_step, len(outcome.accepted) + 1,
                                  plain_decode=outcome.t_verify if quiet else None)
            if self._rest_step:  # a rest step does no drafting work at all, learning included
                return
        if self.adaptive and self.mode != "staged":
            self._explore_credit += self._explore_share * (outcome.t_draft + outcome.t_verify)
        if self.dm is not None and self.mode == "staged":
            self.dm.settle([outcome.tree.nodes[i].token for i in outcome.accepted])
            if self.adaptive:
                t = outcome.t_draft + outcome.t_verify
                n = len(outcome.accepted) + 1
                if self._draft_seconds is None:
                    self._draft_seconds, self._draft_tokens = t, float(n)
                else:
                    self._draft_seconds = 0.8 * self._draft_seconds + 0.2 * t
                    self._draft_tokens = 0.8 * self._draft_tokens + 0.2 * n
                won = n / t > self.guard.plain_rate  # adaptive: the guard exists
                self._explore_every = EXPLORE_FIRST if won else min(2 * self._explore_every, EXPLORE_MAX)
                self._explore_share = EXPLORE_SHARE if won else max(self._explore_share / 2, EXPLORE_SHARE_MIN)
        self.stage.learn(outcome)
        self.knowledge.observe(outcome)

    def reset(self) -> None:
        self.knowledge.forget_pending()
        if self.guard is not None:
            self.guard.reply_began()

    def prefill(self, prompt: list[int]) -> None:
        # auto reads the prompt into the draft only while the draft is paying (or has
        # not been tried): otherwise the next try catches up, paid from the credit
        if self.dm is not None and self._draft_viable and (
            not self.adaptive or self._draft_seconds is None or self._explore_every == EXPLORE_FIRST
        ):
            self.dm.prefill(prompt[:-1])


class RealizedRateGuard:
    """Tokens per second actually delivered by active steps (the n-gram stage and maybe
    the draft ran, speculation or not) and by rest steps (plain decoding and nothing
    else), whole steps timed, and the resting rule."""

    def __init__(self, plain_rate_guess: float) -> None:
        self.plain_rate = plain_rate_guess  # EMA over rest steps once there are some
        self._plain_measured = False
        self._began: float | None = None
        self._pending: tuple[bool, int, float | None] | None = None  # the step in flight
        self._tokens = 0
        self._seconds = 0.0
        self._steps = 0
        self._rest_left = 0
        self._rest_len = REST_FIRST

    def reply_began(self) -> None:
        """A new reply is new text: judge it afresh (the plain rate is kept).  The gap
        between two replies is not a step."""
        self._began = None
        self._pending = None
        self._tokens, self._seconds, self._steps = 0, 0.0, 0
        self._rest_left = 0
        self._rest_len = REST_FIRST

    def step_began(self, now: float) -> None:
        if self._began is not None and self._pending is not None:
            self._close(*self._pending, now - self._began)
        self._began = now
        self._pending = None

    def step_ended(self, rested: bool, tokens: int, plain_decode: float | None = None) -> None:
        """`plain_decode`: for an active step that verified nothing, the seconds its
        single-token decode took — a live sample of what plain decoding costs now."""
        self._pending = (rested, tokens, plain_decode)

    def resting(self) -> bool:
        if self._rest_left > 0:
            self._rest_left -= 1
            return True
        return False

    def _plain_sample(self, rate: float) -> None:
        self.plain_rate = rate if not self._plain_measured else 0.9 * self.plain_rate + 0.1 * rate
        self._plain_measured = True

    def _close(self, rested: bool, tokens: int, plain_decode: float | None, seconds: float) -> None:
        if seconds <= 0:
            return
        if rested:
            self._plain_sample(tokens / seconds)
            return
        if plain_decode is not None and plain_decode > 0:
            self._plain_sample(1.0 / (plain_decode + PLAIN_OVERHEAD_S))
        self._tokens += tokens
        self._seconds += seconds
        self._steps += 1
        if self._steps < JUDGE_AFTER:
            return
        won = self._tokens / self._seconds >= (1.0 - TOLERANCE) * self.plain_rate
        self._tokens, self._seconds, self._steps = 0, 0.0, 0
        if won:
            self._rest_len = REST_FIRST
        else:
            self._rest_left = self._rest_len
            self._rest_len = min(2 * self._rest_len, REST_MAX)
