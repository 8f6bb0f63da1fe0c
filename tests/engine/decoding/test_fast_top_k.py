"""fast_top_k: the same tokens as an exact top-k, probabilities within its stated
error, on confident, flat and tiny rows (a confident row once fell back to sorting
the whole vocabulary)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.decoding.sampling import fast_top_k, top_k


@pytest.mark.parametrize("scale,peak", [(2.0, 40.0), (2.0, 12.0), (0.5, 1.0)])
def test_matches_exact_top_k(scale, peak):
    rng = np.random.default_rng(1)
    row = (rng.standard_normal(151936) * scale).astype(np.float32)
    row[[5, 9]] = [peak, peak - 2]
    ids, probs, ent = fast_top_k(row, 4)
    exact_ids, exact_p = top_k(row, 4)
    assert list(ids) == list(exact_ids)
    assert np.allclose(probs, exact_p, rtol=1e-3, atol=1e-7)
    p = np.exp(row.astype(np.float64) - row.max())
    p /= p.sum()
    nz = p[p > 0]
    assert ent == pytest.approx(float(-(nz * np.log(nz)).sum()), rel=1e-2, abs=1e-3)


def test_more_children_than_tokens():
    ids, probs, _ = fast_top_k(np.array([0.0, 3.0, 1.0], dtype=np.float32), 8)
    assert list(ids) == [1, 2, 0] and probs.sum() == pytest.approx(1.0)
