"""Rendering a conversation with the chat template stored in the GGUF.

A chat template is Jinja code from a downloaded file.  It is rendered in an
immutable sandbox: no attribute access to Python internals, no mutation of
arguments, so a hostile template cannot run code (issue 6: template injection).
"""

from __future__ import annotations

from datetime import datetime

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import ModelFileError

# Used when a GGUF has no template (base models): ChatML, what Qwen models use.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = _tojson
    return env


def _tojson(value: object, indent: int | None = None, **_: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, indent=indent)


class ChatTemplate:
    def __init__(self, source: str | None, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or CHATML
        self.bos_token = bos_token
        self.eos_token = eos_token
        try:
            self._template = _environment().from_string(self.source)
        except jinja2.TemplateError as exc:
            raise ModelFileError(f"the model's chat template is invalid: {exc}") from exc

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        clean = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        try:
            return self._template.render(
                messages=clean,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except jinja2.exceptions.SecurityError as exc:
            raise ModelFileError(f"the model's chat template tried something unsafe and was stopped: {exc}") from exc
        except jinja2.TemplateError as exc:
            raise ModelFileError(f"the model's chat template failed: {exc}") from exc
