"""Is an arm's greedy output the same as plain decoding's?

Exactly the rule of tests/engine/decoding/test_greedy_equivalence.py: the target's logits
differ slightly between a batch and a single token (DESIGN §2: up to ~0.6), so at
a near-tie the argmax may legitimately flip.  At the first differing token, plain
decoding's top-1 minus top-2 logit margin there decides: within NEAR_TIE it is
noise ("near-tie"), beyond it speculation changed the output ("MISMATCH").

Arms that only give text (llama.cpp's binaries) are compared on text: the first
differing character is mapped back to the plain token that produced it.  The
real divergence can hide a token or two earlier: where plain chose "   " then
" for", llama.cpp chose a token spelling "    \n" — same first characters, so the
text differs only inside plain's next token.  The verdict therefore takes the
smallest plain margin among the differing token and the TEXT_LOOKBACK before it.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.bench.results import RunResult
from engine.llama.detokenize import Detokenizer

NEAR_TIE = 1.0  # logits; the same threshold as the greedy-equivalence test
TEXT_LOOKBACK = 2

IDENTICAL, NEAR, MISMATCH, UNCHECKED = "identical", "near-tie", "MISMATCH", "unchecked"


def compare_tokens(plain: Sequence[int], margins: Sequence[float], other: Sequence[int]) -> dict:
    """Verdict for a token stream against plain decoding's, with plain's margins."""
    for i, (a, b) in enumerate(zip(plain, other, strict=False)):
        if a != b:
            return _verdict(i, margins, f"token {i}: plain {a}, arm {b}")
    if len(plain) != len(other):
        # Same prefix, different length: one stopped early.  Plain decoding and
        # speculation get the same token limit, so this is a real difference.
        return {"status": MISMATCH, "index": min(len(plain), len(other)), "margin": None,
                "detail": f"lengths differ: plain {len(plain)}, arm {len(other)} tokens"}
    return {"status": IDENTICAL, "index": None, "margin": None, "detail": ""}


def compare_text(plain_pieces: Sequence[str], margins: Sequence[float], other: str) -> dict:
    """Verdict for text against plain decoding's text, given plain's text per token.
    Only the common length is compared: external tools count tokens their own way
    (llama-speculative-simple emits one token more than asked)."""
    plain = "".join(plain_pieces)
    n = min(len(plain), len(other))
    for c in range(n):
        if plain[c] != other[c]:
            i = token_at_char(plain_pieces, c)
            candidates = [j for j in range(max(0, i - TEXT_LOOKBACK), i + 1) if j < len(margins)]
            j = min(candidates, key=lambda k: margins[k]) if candidates else i
            return _verdict(j, margins, f"char {c} (token {i}, closest call at token {j}): "
                                        f"plain {plain[c:c + 12]!r}, arm {other[c:c + 12]!r}")
    slack = len(plain_pieces[-1]) + 2 if plain_pieces else 0  # a last, partly printed character
    if len(plain) - len(other) > slack:
        return {"status": MISMATCH, "index": token_at_char(plain_pieces, n), "margin": None,
                "detail": f"arm stopped early: {len(other)} of {len(plain)} characters"}
    return {"status": IDENTICAL, "index": None, "margin": None, "detail": ""}


def token_at_char(pieces: Sequence[str], char: int) -> int:
    seen = 0
    for i, piece in enumerate(pieces):
        seen += len(piece)
        if char < seen:
            return i
    return max(len(pieces) - 1, 0)


def _verdict(i: int, margins: Sequence[float], detail: str) -> dict:
    m = float(margins[i]) if i < len(margins) else None
    status = NEAR if m is not None and m <= NEAR_TIE else MISMATCH
    return {"status": status, "index": i, "margin": m, "detail": detail}


def token_pieces(model, tokens: Sequence[int]) -> list[str]:
    """Text each token completes (empty for end-of-turn tokens), as the engine prints it.
    `model`: anything with token_bytes() and eog_mask (engine.llama.backend.LlamaModel)."""
    detok = Detokenizer(model.token_bytes)
    eog = model.eog_mask
    return ["" if eog[t] else detok.push(t) for t in tokens]


def check_runs(runs: Sequence[RunResult], model, *, greedy: bool = True) -> None:
    """Set `check` on every run of one prompt against that prompt's plain run."""
    plain = next((r for r in runs if r.arm == "plain"), None)
    pieces = None
    for r in runs:
        if r.arm == "plain" or not r.ok:
            continue
        if plain is None or not plain.ok or not greedy or plain.margins is None:
            r.check = {"status": UNCHECKED, "index": None, "margin": None,
                       "detail": "sampling" if not greedy else "no plain reference"}
        elif r.tokens is not None:
            r.check = compare_tokens(plain.tokens, plain.margins, r.tokens)
        else:
            pieces = pieces if pieces is not None else token_pieces(model, plain.tokens)
            r.check = compare_text(pieces, plain.margins, r.text)
        if r.tokens is not None and not r.text:
            r.text = "".join(token_pieces(model, r.tokens))
