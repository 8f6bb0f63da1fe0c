"""Write assets/prompts/revision.jsonl: the benchmark's revision suite.

Each request pastes real code or documentation and asks for it back changed — a
revision, a bug fix, a translation of comments, a re-format — the everyday
request of a coding chat, where the reply repeats much of the context.  Four
questions have a second turn that asks to revise the previous answer again.

The texts are CPython 3.11's standard library (PSF License), read from this
interpreter's Lib directory; the suite file records exactly which function and
which deliberate edit (an injected bug, French comments, squeezed layout).  Run
with Python 3.11 to reproduce the committed file byte for byte:

    python scripts/make_revision_suite.py
"""

from __future__ import annotations

import fnmatch
import functools
import heapq
import inspect
import json
import re
import statistics
import sys
import textwrap
import urllib.parse
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "assets" / "prompts" / "revision.jsonl"
LICENSE = "CPython 3.11 standard library, PSF License"


def source(obj) -> str:
    return inspect.getsource(obj).rstrip("\n") + "\n"


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def code(text: str) -> str:
    return f"```python\n{text}```"


LRU_CACHE_FR = {
    # the docstring and comments of functools.lru_cache, translated for the suite
    "Least-recently-used cache decorator.": "Décorateur de cache LRU (le moins récemment utilisé).",
    "If *maxsize* is set to None, the LRU features are disabled and the cache\n    can grow without bound.":
        "Si *maxsize* vaut None, les fonctions LRU sont désactivées et le cache\n    peut grandir sans limite.",
    "If *typed* is True, arguments of different types will be cached separately.\n"
    "    For example, f(3.0) and f(3) will be treated as distinct calls with\n    distinct results.":
        "Si *typed* vaut True, les arguments de types différents sont mis en cache séparément.\n"
        "    Par exemple, f(3.0) et f(3) sont traités comme des appels distincts avec\n    des résultats distincts.",
    "Arguments to the cached function must be hashable.":
        "Les arguments de la fonction mise en cache doivent être hachables.",
    "View the cache statistics named tuple (hits, misses, maxsize, currsize)\n"
    "    with f.cache_info().  Clear the cache and statistics with f.cache_clear().\n"
    "    Access the underlying function with f.__wrapped__.":
        "Consultez le tuple nommé des statistiques du cache (hits, misses, maxsize, currsize)\n"
        "    avec f.cache_info().  Videz le cache et les statistiques avec f.cache_clear().\n"
        "    Accédez à la fonction sous-jacente avec f.__wrapped__.",
    "See:  https://": "Voir :  https://",
    "# Users should only access the lru_cache through its public API:\n"
    "    #       cache_info, cache_clear, and f.__wrapped__\n"
    "    # The internals of the lru_cache are encapsulated for thread safety and\n"
    "    # to allow the implementation to change (including a possible C version).":
        "# Les utilisateurs ne doivent accéder au lru_cache que par son API publique :\n"
        "    #       cache_info, cache_clear et f.__wrapped__\n"
        "    # Les détails internes du lru_cache sont encapsulés pour la sûreté des threads et\n"
        "    # pour permettre à l'implémentation de changer (y compris une version en C).",
    "# Negative maxsize is treated as 0": "# Un maxsize négatif est traité comme 0",
    "# The user_function was passed in directly via the maxsize argument":
        "# La user_function a été passée directement dans l'argument maxsize",
}


def french_lru_cache() -> str:
    text = source(functools.lru_cache)
    for old, new in LRU_CACHE_FR.items():
        text = replace_once(text, old, new)
    return text


def squeezed(text: str) -> str:
    """The same code with 2-space indentation and the spaces around `=` and after
    commas removed: what a re-format request starts from."""
    lines = []
    in_docstring = False
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        indent = (len(line) - len(stripped)) // 2
        quoted = "'" in stripped or '"' in stripped
        if not in_docstring and not quoted and not stripped.startswith("#"):
            stripped = re.sub(r"\s*=\s*", "=", stripped).replace("= =", "==").replace(", ", ",")
        if stripped.count('"""') == 1:
            in_docstring = not in_docstring
        lines.append(" " * indent + stripped)
    return "\n".join(lines) + "\n"


def questions() -> list[dict]:
    merge = source(heapq.merge)
    regression = source(statistics.linear_regression)
    dedent_bug = replace_once(source(textwrap.dedent), "margin = margin[:i]", "margin = margin[:i + 1]")
    median_bug = replace_once(source(statistics.median_grouped), "L = x - interval / 2.0", "L = x + interval / 2.0")
    translate = source(fnmatch.translate)
    urlsplit = source(urllib.parse.urlsplit)
    doc = "# The json module\n\n" + inspect.getdoc(sys.modules["json"]) + "\n"
    return [
        {"question_id": "revise-1", "category": "revise", "source": f"heapq.merge ({LICENSE})", "turns": [
            "Add type hints to this function (use typing.Iterable, Iterator, Callable and TypeVar as needed). "
            "Keep the docstring and the code otherwise unchanged, and return the complete function.\n\n"
            + code(merge),
            "Now also rename the short variable names (h, s, it, order) to descriptive names and return the "
            "whole function again."]},
        {"question_id": "revise-2", "category": "revise", "source": f"statistics.linear_regression ({LICENSE})",
         "turns": [
            "Refactor this function: add type hints, split the two long error messages over several lines so no "
            "line is longer than 88 characters, and keep the docstring. Return the complete function.\n\n"
            + code(regression)]},
        {"question_id": "fix-1", "category": "fix",
         "source": f"textwrap.dedent, with `margin[:i]` changed to `margin[:i + 1]` ({LICENSE})", "turns": [
            "This function is meant to remove the common leading whitespace from every line, but "
            "`dedent('  \\tfoo\\n   bar\\n')` returns `'foo\\n   bar\\n'` instead of "
            "`'\\tfoo\\n bar\\n'`. Find the bug, explain it in one sentence, and return the complete "
            "corrected function.\n\n"
            + code(dedent_bug),
            "Add a doctest to the docstring that would have caught this bug, and return the whole function again."]},
        {"question_id": "fix-2", "category": "fix",
         "source": f"statistics.median_grouped, with `x - interval / 2.0` changed to `x + interval / 2.0` "
                   f"({LICENSE})", "turns": [
            "The doctest in this function's docstring fails: `round(median_grouped(data, interval=10), 1)` gives "
            "47.5 instead of 37.5. Find the bug and return the complete corrected function.\n\n"
            + code(median_bug)]},
        {"question_id": "translate-1", "category": "translate", "source": f"fnmatch.translate ({LICENSE})",
         "turns": [
            "Translate every comment and the docstring of this function into German. Do not change the code "
            "itself. Return the complete function.\n\n" + code(translate),
            "Now translate the original English comments into Spanish instead, same rules, and return the whole "
            "function again."]},
        {"question_id": "translate-2", "category": "translate",
         "source": f"functools.lru_cache, docstring and comments translated into French for this suite ({LICENSE})",
         "turns": [
            "Translate the French docstring and comments of this function into English. Leave the code exactly "
            "as it is and return the complete function.\n\n" + code(french_lru_cache())]},
        {"question_id": "reformat-1", "category": "reformat",
         "source": f"the json module's docstring ({LICENSE})", "turns": [
            "Reformat this documentation as clean Markdown: a heading for each section, the examples in "
            "```python code blocks (without the >>> prompts, with the printed results as comments). Keep every "
            "example.\n\n" + doc,
            "Add a short table of contents at the top that links to each section, and return the whole "
            "document again."]},
        {"question_id": "reformat-2", "category": "reformat",
         "source": f"urllib.parse.urlsplit, re-indented with 2 spaces and squeezed ({LICENSE})", "turns": [
            "Reformat this code to PEP 8: 4-space indentation, spaces around `=` in assignments, a space after "
            "every comma. Do not change what it does. Return the complete function.\n\n"
            + code(squeezed(urlsplit))]},
    ]


def main() -> int:
    if sys.version_info[:2] != (3, 11):
        print("warning: not Python 3.11; the texts will differ from the committed suite", file=sys.stderr)
    rows = questions()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for r in rows:
        print(r["question_id"], r["category"], [len(t) for t in r["turns"]], file=sys.stderr)
    print(OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
