"""Traces of the target's greedy replies, for replaying speculation policies offline.

Per prompt: the prompt tokens, the target's greedy reply and its top-2 margins,
and at every reply position the draft's top-k tokens and probabilities (and the
entropy of its distribution) teacher-forced on the target's text.  Per trace
set: both models' measured decode-cost curves (Engine.cost_model()).

On disk (TRACE_DIR): meta.json (machine, costs, prompt list) and traces.npz
(arrays `<i>.<name>`), a few hundred kB for 16 prompts of 256 tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.decoding.costmodel import CostCurve, CostModel
from engine.errors import TandemError

FORMAT = 1
ARRAYS = ("prompt", "tokens", "margins", "draft_ids", "draft_p", "draft_entropy")


@dataclass
class PromptTrace:
    id: str
    category: str
    prompt: np.ndarray  # int32 [P]
    tokens: np.ndarray  # int32 [T], the target's greedy reply
    margins: np.ndarray  # float32 [T], target top-1 minus top-2 logit
    draft_ids: np.ndarray  # int32 [T, k]; row j: the draft's top-k for tokens[j] given prompt + tokens[:j]
    draft_p: np.ndarray  # float32 [T, k]
    draft_entropy: np.ndarray  # float32 [T]
    plain_tps: float | None = None  # measured while recording
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # replay's per-trace memo

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class TraceSet:
    prompts: list[PromptTrace]
    costs: CostModel
    meta: dict = field(default_factory=dict)

    def categories(self) -> list[str]:
        out: list[str] = []
        for p in self.prompts:
            if p.category not in out:
                out.append(p.category)
        return out

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"{i}.{name}": getattr(p, name) for i, p in enumerate(self.prompts) for name in ARRAYS}
        np.savez_compressed(directory / "traces.npz", **arrays)
        meta = dict(self.meta)
        meta.update({
            "format": FORMAT,
            "costs": {"target": self.costs.target.to_dict(),
                      "draft": self.costs.draft.to_dict() if self.costs.draft else None},
            "prompts": [{"id": p.id, "category": p.category, "plain_tps": p.plain_tps,
                         "prompt_tokens": len(p.prompt), "tokens": len(p.tokens)} for p in self.prompts],
        })
        (directory / "meta.json").write_text(json.dumps(meta, indent=1))
        return directory

    @classmethod
    def load(cls, directory: Path) -> TraceSet:
        try:
            meta = json.loads((directory / "meta.json").read_text())
            data = np.load(directory / "traces.npz")
        except (OSError, ValueError) as exc:
            raise TandemError(f"{directory} is not a trace directory (tandem bench --record): {exc}") from exc
        if meta.get("format") != FORMAT:
            raise TandemError(f"{directory}: trace format {meta.get('format')}, expected {FORMAT}")
        costs = meta["costs"]
        if costs.get("draft") is None:
            raise TandemError(f"{directory}: the trace has no draft cost curve")
        prompts = [
            PromptTrace(p["id"], p["category"], *(data[f"{i}.{name}"] for name in ARRAYS), plain_tps=p.get("plain_tps"))
            for i, p in enumerate(meta["prompts"])
        ]
        cost = CostModel(CostCurve.from_dict(costs["target"]), CostCurve.from_dict(costs["draft"]))
        return cls(prompts, cost, meta)
