"""Token ids to text, one token at a time, never splitting a character.

A multi-byte UTF-8 character can span tokens (byte-fallback tokens, CJK, emoji).
Bytes go through an incremental decoder, so a piece of text is emitted only when
its characters are complete; each emitted piece is attributed to the token that
completed it.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable


class Detokenizer:
    def __init__(self, token_bytes: Callable[[int], bytes]) -> None:
        self._token_bytes = token_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        """Text completed by this token (possibly empty)."""
        return self._decoder.decode(self._token_bytes(token))

    def flush(self) -> str:
        """Whatever is left at the end of a reply (an unfinished character becomes U+FFFD)."""
        return self._decoder.decode(b"", final=True)
