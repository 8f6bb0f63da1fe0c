"""The speculation history: persistence, bounds, forgetting, and the stage reading it."""

from __future__ import annotations

import io
import itertools
import json

import numpy as np

from engine.drafters.history import FILE_NAME, KEY_LEN, SpeculationHistory, forget_all, history_dir, new_part
from engine.drafters.learning import PairKnowledge
from engine.drafters.ngram_drafter import CandidateStage


def docs(n: int, length: int = 30, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 500, size=length).tolist() for _ in range(n)]


def test_round_trip_keeps_every_document_and_answer(tmp_path):
    h = SpeculationHistory(tmp_path)
    corpus = docs(20)
    for d in corpus:
        h.add(d)
    again = SpeculationHistory(tmp_path)
    assert [d.tolist() for d in again.documents()] == corpus
    query = [7, 7, *corpus[5][:12]]
    a, b = h.index.match(query), again.index.match(query)
    assert a is not None and b is not None
    assert a.length == b.length == 12
    assert a.ends.tolist() == b.ends.tolist()


def test_short_documents_are_not_kept(tmp_path):
    h = SpeculationHistory(tmp_path)
    h.add(list(range(KEY_LEN)))
    assert len(h) == 0


def test_bounded_by_documents_oldest_dropped(tmp_path):
    h = SpeculationHistory(tmp_path, max_docs=10)
    corpus = docs(25)
    for d in corpus:
        h.add(d)
    assert 1 <= len(h) <= 10
    kept = [d.tolist() for d in h.documents()]
    assert kept == corpus[-len(kept):]  # the newest, in order
    assert [d.tolist() for d in SpeculationHistory(tmp_path, max_docs=10).documents()] == kept
    assert h.index.match(corpus[0][:12]) is None  # the oldest is gone from the index too


def test_bounded_by_bytes(tmp_path):
    limit = 16 * 31 * 8  # about eight 30-token documents
    h = SpeculationHistory(tmp_path, max_bytes=limit)
    for d in docs(30):
        h.add(d)
        assert h.index.nbytes() <= limit
    assert len(h) >= 1
    # the file holds what the index holds, nothing more
    raw = np.fromfile(tmp_path / FILE_NAME, dtype=np.int32)
    assert len(raw) == sum(len(d) + 1 for d in h.documents())


def test_damaged_tail_keeps_what_came_before(tmp_path):
    h = SpeculationHistory(tmp_path)
    corpus = docs(3)
    for d in corpus:
        h.add(d)
    with (tmp_path / FILE_NAME).open("ab") as f:
        np.array([50, 1, 2], dtype=np.int32).tofile(f)  # a torn write: says 50 tokens, has 2
    again = SpeculationHistory(tmp_path)
    assert [d.tolist() for d in again.documents()] == corpus
    again.add(docs(1, seed=9)[0])
    assert len(SpeculationHistory(tmp_path)) == 4


def test_forget_empties_memory_and_disk(tmp_path):
    target = tmp_path / "model.gguf"
    target.write_bytes(b"x" * 10)
    h = SpeculationHistory(history_dir(tmp_path, target))
    for d in docs(5):
        h.add(d)
    assert (history_dir(tmp_path, target) / FILE_NAME).exists()
    h.forget()
    assert len(h) == 0 and h.index.n == 0
    assert h.index.match(docs(5)[0][:12]) is None
    assert not (history_dir(tmp_path, target) / FILE_NAME).exists()
    h.add(docs(1)[0])
    assert forget_all(tmp_path) == 1
    assert len(SpeculationHistory(history_dir(tmp_path, target))) == 0


def test_server_forgets_without_a_model_loaded(tmp_path, monkeypatch):
    from engine.runtime.server import Server

    monkeypatch.setenv("TANDEM_DATA_DIR", str(tmp_path))
    target = tmp_path / "model.gguf"
    target.write_bytes(b"x" * 10)
    h = SpeculationHistory(history_dir(tmp_path, target))
    h.add(docs(1)[0])
    out = io.StringIO()
    Server(out)._op_forget_history({"op": "forget_history", "id": "f1"})
    reply = json.loads(out.getvalue())
    assert reply == {"type": "history_forgotten", "id": "f1", "files": 1}
    assert len(SpeculationHistory(history_dir(tmp_path, target))) == 0


def test_new_part_is_what_follows_the_shared_prefix():
    assert new_part([1, 2, 3, 4], [1, 2, 9]) == [3, 4]
    assert new_part([5, 6], []) == [5, 6]
    assert new_part([1, 2], [1, 2, 3]) == []


def test_stage_proposes_the_history_copy_with_its_source():
    h = SpeculationHistory(None)
    earlier = list(range(1000, 1060))
    h.add(earlier)
    stage = CandidateStage(PairKnowledge(None), h)
    stream = [1, 2, 3, *earlier[:20]]  # this conversation has not seen it; the history has
    tree = stage.candidates(stream)
    chain = [n for n in tree.nodes if n.source == "history"]
    assert [n.token for n in chain][:5] == earlier[20:25]
    assert all(b.p_accept <= a.p_accept for a, b in itertools.pairwise(chain))
    assert len(chain) <= 20  # at most factor x match length


def test_stage_prefers_nothing_for_a_short_match():
    stage = CandidateStage(PairKnowledge(None), None)
    tree = stage.candidates([5, 6, 7, 8, 9, 5, 6])  # a 2-token match: a weak guess
    assert all(n.p_accept < 0.6 for n in tree.nodes)


def test_big_history_finds_the_one_document_that_matches():
    """2,000 replies of 300 tokens: the lookup still finds the exact earlier copy
    (the per-step cost with a loaded history is reported by scripts, not asserted)."""
    corpus = docs(2000, length=300, seed=1)
    h = SpeculationHistory(None)
    for d in corpus:
        h.add(d)
    stage = CandidateStage(PairKnowledge(None), h)
    stream = [*docs(1, length=3000, seed=2)[0], *corpus[1234][:40]]
    tree = stage.candidates(stream)
    chain = [n.token for n in tree.nodes if n.source == "history"]
    assert chain[:10] == corpus[1234][40:50]
