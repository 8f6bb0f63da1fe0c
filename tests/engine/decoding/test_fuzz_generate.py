"""Property-based tests of the engine's invariants (issue 6, item 5).

Random trees, random acceptance patterns, random cancellations and contexts near
full: the output always equals plain decoding on a synthetic model, and the KV
bookkeeping always agrees with llama.cpp's cache.
"""

from __future__ import annotations

import threading

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.decoding.events import StepEvent
from engine.decoding.generate import generate
from engine.decoding.tree import DRAFT, NGRAM, ROOT, Tree
from engine.decoding.verify import verify_greedy
from engine.llama.lm import TIP
from engine.settings import GenerationSettings
from tests.engine.decoding.synthetic_setup import drafter_for, eog_mask, pair, token_bytes

MODES = ["off", "chain", "tree", "c2t", "ngram", "staged", "auto"]


@st.composite
def trees(draw: st.DrawFn, n_vocab: int = 8) -> Tree:
    tree = Tree()
    for _ in range(draw(st.integers(0, 30))):
        parent = draw(st.integers(-1, len(tree) - 1))
        tree.add(parent, draw(st.integers(0, n_vocab - 1)), draw(st.sampled_from([DRAFT, NGRAM])),
                 draw(st.floats(0.0, 1.0)))
    return tree


@settings(max_examples=200, deadline=None)
@given(tree=trees(), seed=st.integers(0, 2**32 - 1))
def test_greedy_verification_emits_the_targets_argmax_chain(tree: Tree, seed: int) -> None:
    """Whatever the tree, the emitted tokens are exactly the target's greedy tokens."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((len(tree) + 1, 8)).astype(np.float32)
    path, bonus = verify_greedy(tree, logits)
    node = ROOT
    for child in path:
        assert tree.nodes[child].parent == node
        assert tree.nodes[child].token == int(np.argmax(logits[node + 1]))
        node = child
    assert bonus == int(np.argmax(logits[node + 1]))
    assert tree.child_with_token(node, bonus) is None


@settings(max_examples=100, deadline=None)
@given(tree=trees(), budget=st.integers(0, 30))
def test_pruning_keeps_a_tree(tree: Tree, budget: int) -> None:
    chosen = tree.best(budget)
    kept = tree.keep(chosen)
    closure = {a for i in chosen for a in tree.path(i)}
    assert len(kept) == len(closure)
    assert sorted(kept.path_tokens(i) for i in range(len(kept))) == sorted(tree.path_tokens(i) for i in closure)
    for i, node in enumerate(kept.nodes):
        assert node.parent < i  # parents first: a valid batch order
        if node.parent != ROOT:
            assert node.depth == kept.nodes[node.parent].depth + 1
    drafted = sum(tree.count_by_source().values()) + sum(tree.ignored.values())
    assert sum(kept.count_by_source().values()) + sum(kept.ignored.values()) == drafted


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(MODES),
    seed=st.integers(0, 1000),
    noise=st.floats(0.0, 3.0),
    n_ctx=st.integers(24, 120),
    cancel_after=st.one_of(st.none(), st.integers(1, 6)),
    budget=st.integers(1, 24),
)
def test_any_drafter_equals_plain_decoding(mode, seed, noise, n_ctx, cancel_after, budget) -> None:
    prompt = [1, 2, 3, 1, 2, 3, 1, 2]
    target, draft = pair(16, seed=seed, noise=noise, n_ctx=n_ctx, eog=(15,))
    plain_target, plain_draft = pair(16, seed=seed, noise=noise, n_ctx=n_ctx, eog=(15,))
    drafter, spec = drafter_for(mode, draft, budget=budget)
    plain, plain_spec = drafter_for("off", plain_draft)
    cancel = threading.Event()
    steps = []

    def on_event(event: object) -> None:
        if isinstance(event, StepEvent):
            steps.append(event)
            if cancel_after is not None and len(steps) >= cancel_after:
                cancel.set()

    mask = eog_mask(16, (15,))
    reply = generate(target, prompt, drafter, GenerationSettings(max_tokens=60, spec=spec), eog_mask=mask,
                     token_bytes=token_bytes, cancel=cancel, on_event=on_event)
    expected = generate(plain_target, prompt, plain, GenerationSettings(max_tokens=60, spec=plain_spec),
                        eog_mask=mask, token_bytes=token_bytes)
    n = len(reply.tokens)
    assert reply.tokens == expected.tokens[:n]
    if reply.reason != "cancelled":
        assert reply.tokens == expected.tokens
    assert target.tokens == prompt + reply.tokens[:-1]
    assert target.n_pending == 0
    assert len(target.tokens) <= n_ctx


@st.composite
def kv_programs(draw: st.DrawFn) -> list[tuple]:
    ops = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["chain", "nodes", "commit", "discard", "truncate"]))
        if kind == "chain":
            ops.append(("chain", draw(st.lists(st.integers(1, 250), min_size=1, max_size=6))))
        elif kind == "nodes":
            ops.append(("nodes", draw(st.lists(st.tuples(st.integers(-1, 40), st.integers(1, 250)),
                                                min_size=1, max_size=8))))
        elif kind == "commit":
            ops.append(("commit", draw(st.integers(0, 6))))
        elif kind == "truncate":
            ops.append(("truncate", draw(st.integers(0, 40))))
        else:
            ops.append(("discard",))
    return ops


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(program=kv_programs())
def test_kv_bookkeeping_stays_consistent_with_llama_cpp(tiny_gguf, program) -> None:
    """Random decode/commit/discard/truncate sequences on a real llama.cpp cache:
    llama.cpp's positions always match the bookkeeping, and the logits after the
    committed text match a fresh decode of it."""
    from engine.llama.backend import LlamaContext
    from engine.llama.lm import ContextFull, LlamaLM

    model = _model(tiny_gguf)
    lm = LlamaLM(model, LlamaContext(model, n_ctx=256, n_threads=1, n_seq_max=8, n_batch=64))
    lm.decode([5, 6])
    for op in program:
        try:
            if op[0] == "chain" and lm.n_pending == 0:
                lm.decode(op[1])
            elif op[0] == "nodes":
                base = lm.n_pending
                pending = lm.pending()
                parents = []
                for i, (p, _) in enumerate(op[1]):
                    if p < 0 or p >= base + i or (p < base and pending[p][0] == -2):
                        p = TIP  # only earlier, still cached nodes can be parents
                    parents.append(p)
                lm.decode([], parents, [t for _, t in op[1]])
            elif op[0] == "commit":
                # walk down from the tip through the first cached child, op[1] times
                pending = lm.pending()
                path, node = [], TIP
                for _ in range(op[1]):
                    nxt = next((i for i, (p, _) in enumerate(pending) if p == node), None)
                    if nxt is None:
                        break
                    path.append(nxt)
                    node = nxt
                lm.commit(path)
            elif op[0] == "discard":
                lm.discard()
            elif op[0] == "truncate":
                lm.truncate(op[1])
        except ContextFull:
            pass
        lm.check_consistent()
    lm.discard()
    if lm.tokens:
        committed = list(lm.tokens)
        lm.truncate(len(committed) - 1)
        row = lm.decode([committed[-1]])[0].copy()
        ref = LlamaLM(model, LlamaContext(model, n_ctx=256, n_threads=1, n_seq_max=2, n_batch=64))
        if len(committed) > 1:
            ref.decode(committed[:-1])
        expected = ref.decode([committed[-1]])[0]
        assert np.abs(row - expected).max() < 0.05
        ref.ctx.close()
    lm.ctx.close()


_models: dict = {}


def _model(path):  # one model per test session: loading is the slow part
    from engine.llama.backend import LlamaModel

    if path not in _models:
        _models[path] = LlamaModel(path)
    return _models[path]
