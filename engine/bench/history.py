"""The conversation before a later turn of a multi-turn question.

MT-bench questions have several turns; the second is asked after the model's
answer to the first.  Each arm's own answer would differ only by near-tie noise
but would change the prompt, so arms could not be compared: the earlier turns
are answered once by plain greedy decoding and every arm gets the same history.
When the benchmark has just run the plain arm greedily on the earlier turn, that
run's reply is the answer (`remember`); otherwise it is generated here.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.bench.suites import BenchPrompt, turn_id
from engine.settings import GenerationSettings

Answerer = Callable[[list[dict]], str]  # conversation (ending with a user message) -> reply text


class Histories:
    def __init__(self, answer: Answerer) -> None:
        self._answer = answer
        self._answers: dict[tuple[str, int], str] = {}
        self.generated: list[str] = []  # turn ids answered here rather than by a benchmark run

    def remember(self, prompt: BenchPrompt, reply: str) -> None:
        """`reply`: plain greedy decoding's answer to `prompt` (the first one stays)."""
        self._answers.setdefault((prompt.question_id, prompt.turn), reply)

    def answers(self, prompt: BenchPrompt) -> list[str]:
        """The answers to the turns before `prompt`, generating the missing ones in order."""
        out: list[str] = []
        q = prompt.question_id
        for k in range(1, prompt.turn):
            key = (q, k)
            if key not in self._answers:
                earlier = BenchPrompt(turn_id(q, k), prompt.category, prompt.earlier[k - 1], k,
                                      prompt.earlier[:k - 1], q)
                self._answers[key] = self._answer(earlier.conversation(out))
                self.generated.append(earlier.id)
            out.append(self._answers[key])
        return out

    def conversation(self, prompt: BenchPrompt) -> list[dict]:
        return prompt.conversation(self.answers(prompt))


def plain_answerer(engine, max_tokens: int) -> Answerer:
    """Answers with the engine's plain greedy decoding, `max_tokens` at most (the
    benchmark's own budget, so a remembered plain run and a generated answer agree)."""

    def answer(messages: list[dict]) -> str:
        settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0)
        settings.spec.mode = "off"
        return engine.reply(messages, settings).text

    return answer
