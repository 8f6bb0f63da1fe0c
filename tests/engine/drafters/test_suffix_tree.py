"""The suffix index against brute force: longest match, occurrences and the
frequency of every proposed path, on random token streams."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.drafters.suffix_tree import SEP, SuffixIndex

docs_strategy = st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=40), min_size=1, max_size=5)


def corpus_of(docs: list[list[int]]) -> list[int]:
    out: list[int] = []
    for d in docs:
        out += [*d, SEP]
    return out


def brute_match(corpus: list[int], query: list[int], key_len: int, max_depth: int) -> tuple[int, list[int]]:
    """(longest length, sorted end positions) by trying every length and place."""
    for length in range(min(max_depth, len(query)), key_len - 1, -1):
        suffix = query[-length:]
        ends = [p for p in range(length, len(corpus))
                if corpus[p - length : p] == suffix and corpus[p] != SEP]
        if ends:
            return length, ends
    return 0, []


def count_path(corpus: list[int], ends: list[int], path: list[int]) -> int:
    return sum(1 for p in ends if corpus[p : p + len(path)] == path)


def check(index: SuffixIndex, corpus: list[int], query: list[int]) -> None:
    length, ends = brute_match(corpus, query, index.key_len, index.max_depth)
    m = index.match(query)
    if not length:
        assert m is None
        return
    assert m is not None
    assert m.length == length
    assert sorted(m.ends.tolist()) == ends
    cands = index.speculate(m, max_tokens=12, min_prob=0.1)
    paths: list[list[int]] = []
    for c in cands:
        assert c.parent < len(paths)  # parents first
        path = (paths[c.parent] if c.parent >= 0 else []) + [c.token]
        paths.append(path)
        n = count_path(corpus, ends, path)
        assert c.count == n
        assert abs(c.prob - n / len(ends)) < 1e-9
        assert c.prob >= 0.1
    assert len(set(map(tuple, paths))) == len(paths)
    # best-first: nothing left out is likelier than the least likely node taken
    if len(cands) < 12:
        for path in paths:
            for t in range(4):
                nxt = [*path, t]
                if nxt not in paths:
                    assert count_path(corpus, ends, nxt) / len(ends) < 0.1
        for t in range(4):
            if [t] not in paths:
                assert count_path(corpus, ends, [t]) / len(ends) < 0.1


@settings(max_examples=150, deadline=None)
@given(docs_strategy, st.lists(st.integers(0, 3), min_size=1, max_size=20), st.integers(1, 4), st.integers(4, 20))
def test_documents_match_brute_force(docs, query, key_len, max_depth):
    index = SuffixIndex(key_len=key_len, max_depth=max_depth)
    for d in docs:
        index.add_document(d)
    check(index, corpus_of(docs), query)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=80), st.integers(1, 3))
def test_stream_matches_brute_force(stream, key_len):
    """The conversation: the stream indexes itself token by token and is its own query
    (the current end is never a match: nothing follows it yet)."""
    index = SuffixIndex(key_len=key_len, max_depth=16)
    for i, t in enumerate(stream):
        index.append(t)
        if i % 7 == 0 or i == len(stream) - 1:
            check(index, stream[: i + 1], stream[: i + 1])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=60), st.integers(2, 40))
def test_recent_tokens_merge_without_changing_answers(stream, merge_after):
    import engine.drafters.suffix_tree as mod

    old = mod.MERGE_AFTER
    mod.MERGE_AFTER = merge_after
    try:
        index = SuffixIndex(key_len=2, max_depth=12)
        index.add_document([1, 2, 3, 1, 2, 0])
        index.extend(stream)
        check(index, corpus_of([[1, 2, 3, 1, 2, 0]]) + stream, stream)
    finally:
        mod.MERGE_AFTER = old


@settings(max_examples=40, deadline=None)
@given(docs_strategy, st.lists(st.integers(0, 3), min_size=1, max_size=20))
def test_rebuild_equals_incremental(docs, query):
    a = SuffixIndex(key_len=2, max_depth=16)
    for d in docs:
        a.add_document(d)
    b = SuffixIndex(key_len=2, max_depth=16)
    b.rebuild(docs)
    ma, mb = a.match(query), b.match(query)
    assert (ma is None) == (mb is None)
    if ma is not None:
        assert ma.length == mb.length and sorted(ma.ends.tolist()) == sorted(mb.ends.tolist())


def test_long_copy_is_one_chain():
    doc = list(range(100, 160))
    index = SuffixIndex(key_len=4, max_depth=32)
    index.add_document(doc)
    m = index.match([7, 8, *doc[:20]])
    assert m is not None and m.length == 20
    cands = index.speculate(m, max_tokens=30)
    assert [c.token for c in cands] == doc[20:50]
    assert all(c.prob == 1.0 for c in cands)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=0, max_size=30), st.lists(st.integers(0, 3), min_size=1, max_size=60),
       st.integers(1, 3))
def test_bulk_extend_equals_token_by_token(head, tail, key_len):
    import engine.drafters.suffix_tree as mod

    old = mod.BULK
    mod.BULK = 5  # exercise the vectorised path on short streams
    try:
        index = SuffixIndex(key_len=key_len, max_depth=16)
        index.extend(head)
        index.extend(tail)
        check(index, head + tail, head + tail)
    finally:
        mod.BULK = old
