"""Chat templates come from downloaded files: they render in a sandbox (issue 6)."""

from __future__ import annotations

import pytest

from engine.errors import ModelFileError
from engine.llama.chat_template import ChatTemplate
from engine.settings import GenerationSettings, LoadSettings, SpecSettings
from tests.helpers.tiny_gguf import write_tiny_gguf


def payloads(canary: str) -> list[str]:
    """Known Jinja server-side template injection payloads, aimed at creating `canary`."""
    cmd = f"touch {canary}"
    return [
        "{{ cycler.__init__.__globals__.os.popen('" + cmd + "').read() }}",
        "{{ self.__init__.__globals__.__builtins__.__import__('os').system('" + cmd + "') }}",
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% if c.__name__ == 'Popen' %}"
        "{{ c(['touch', '" + canary + "']) }}{% endif %}{% endfor %}",
        "{{ lipsum.__globals__['os'].popen('" + cmd + "').read() }}",
        "{{ messages.append({'role': 'x'}) }}{{ messages.clear() }}",
    ]


def test_injection_payloads_cannot_run_code(tmp_path) -> None:
    canary = tmp_path / "pwned"
    for payload in payloads(str(canary)):
        template = ChatTemplate(payload)
        with pytest.raises(ModelFileError, match="chat template"):
            template.render([{"role": "user", "content": "hi"}])
        assert not canary.exists(), payload


def test_a_model_with_a_hostile_template_is_stopped_end_to_end(tmp_path) -> None:
    from engine.runtime.session import Engine

    canary = tmp_path / "pwned"
    model = write_tiny_gguf(tmp_path / "evil.gguf", chat_template=payloads(str(canary))[0])
    engine = Engine(LoadSettings(str(model), None, n_ctx=256))
    try:
        with pytest.raises(ModelFileError, match="unsafe"):
            settings = GenerationSettings(max_tokens=4, spec=SpecSettings("off"))
            engine.reply([{"role": "user", "content": "hi"}], settings)
    finally:
        engine.close()
    assert not canary.exists()


def test_ordinary_templates_render() -> None:
    template = ChatTemplate(None)  # no template in the file: ChatML
    text = template.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert text.endswith("<|im_start|>assistant\n")
    qwen_like = (
        "{%- for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content | trim + '<|im_end|>\\n' }}"
        "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
    )
    assert "<|im_start|>user\nHi<|im_end|>" in ChatTemplate(qwen_like).render([{"role": "user", "content": " Hi "}])
    with pytest.raises(ModelFileError, match="failed"):
        ChatTemplate("{{ raise_exception('only user and assistant roles') }}").render([])
