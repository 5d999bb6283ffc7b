"""Load and validate a safety taxonomy: risk domains, subcategories, their rules, and query styles.

The taxonomy is data (a versioned YAML file), not code. The packaged default is
``safevid_taxonomy_v1.yaml``; every stage that accepts a taxonomy also accepts the path of a user's own
file in the same schema, which is validated here with errors that name the file and the offending key.

Schema (``version: 1``)::

    version: 1
    name: str
    description: str
    severity_levels: [{id, description}]
    query_styles: [{id, description, harmful: bool}]
    domains:
      - id: snake_case
        name, description: str
        subcategories:
          - id: <domain id>.<snake_case>
            name, description: str
            severity: <a severity level id>
            video_specific: bool            # optional, default false
            rules:
              - id: ABC-1                   # unique across the whole taxonomy
                unsafe_if: str              # what makes a response unsafe
                safe_response: str          # what a safe and still helpful response does
                example_intents: [str, ...] # example query intents (non-empty)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from safevid.config import did_you_mean, read_yaml

SUPPORTED_VERSIONS = (1,)
DEFAULT_TAXONOMY_FILE = "safevid_taxonomy_v1.yaml"

_T = TypeVar("_T")

_DOMAIN_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_SUBCATEGORY_ID = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
_RULE_ID = re.compile(r"^[A-Z]{2,6}-[0-9]+$")
_STYLE_ID = re.compile(r"^[a-z][a-z0-9_]*$")

_TOP_KEYS = {
    "version": True,
    "name": True,
    "description": True,
    "severity_levels": True,
    "query_styles": True,
    "domains": True,
}
_SEVERITY_KEYS = {"id": True, "description": True}
_STYLE_KEYS = {"id": True, "description": True, "harmful": True}
_DOMAIN_KEYS = {"id": True, "name": True, "description": True, "subcategories": True}
_SUBCATEGORY_KEYS = {
    "id": True,
    "name": True,
    "description": True,
    "severity": True,
    "video_specific": False,
    "rules": True,
}
_RULE_KEYS = {"id": True, "unsafe_if": True, "safe_response": True, "example_intents": True}


class TaxonomyError(ValueError):
    """A taxonomy file that does not follow the schema; the message lists every problem found."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid taxonomy {source}: {len(self.problems)} problem(s):\n{listing}")


@dataclass(frozen=True)
class Rule:
    """One safety rule of a subcategory.

    Args:
        id: Stable identifier, unique across the taxonomy (e.g. ``"VIO-1"``).
        unsafe_if: What makes a response unsafe under this rule.
        safe_response: What a safe and still helpful response does.
        example_intents: Example query intents the rule is about.
    """

    id: str
    unsafe_if: str
    safe_response: str
    example_intents: tuple[str, ...]


@dataclass(frozen=True)
class Subcategory:
    """A risk subcategory and its rules.

    Args:
        id: Stable identifier ``<domain>.<name>`` (e.g. ``"violence.graphic_violence"``).
        domain: The id of the domain it belongs to.
        name: Human-readable name.
        description: What content and requests fall in this subcategory.
        severity: Id of its severity level.
        video_specific: Whether the risk exists because the input is a video (step-by-step footage,
            people on screen, events over time, manipulated footage).
        rules: Its rules, in file order.
    """

    id: str
    domain: str
    name: str
    description: str
    severity: str
    video_specific: bool
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Domain:
    """A top-level risk domain.

    Args:
        id: Stable identifier (e.g. ``"violence"``).
        name: Human-readable name.
        description: What the domain covers.
        subcategories: Its subcategories, in file order.
    """

    id: str
    name: str
    description: str
    subcategories: tuple[Subcategory, ...]


@dataclass(frozen=True)
class QueryStyle:
    """A style of query (explicit, jailbreak role-play, benign contrast, ...).

    Args:
        id: Stable identifier (e.g. ``"jailbreak_roleplay"``).
        description: How queries of this style are written.
        harmful: ``False`` for benign-contrast styles, whose right answer is a helpful one.
    """

    id: str
    description: str
    harmful: bool


@dataclass(frozen=True)
class SeverityLevel:
    """A severity level a subcategory can carry."""

    id: str
    description: str


@dataclass(frozen=True)
class Taxonomy:
    """A validated safety taxonomy. Build it with [`load_taxonomy`] or [`Taxonomy.from_dict`].

    Attributes:
        version: Schema version of the file.
        name: Name of the taxonomy.
        description: What it is for.
        domains: Top-level domains, in file order.
        severity_levels: Allowed severity levels, in file order.
        query_styles: Query styles, in file order.
        sha: SHA-256 of the canonical JSON of the parsed content (key order, comments and YAML
            formatting do not change it); record it with every artefact for provenance.
        source: Where it was loaded from (a path, or ``"<dict>"``).
    """

    version: int
    name: str
    description: str
    domains: tuple[Domain, ...]
    severity_levels: tuple[SeverityLevel, ...]
    query_styles: tuple[QueryStyle, ...]
    sha: str
    source: str
    _subcategories: dict[str, Subcategory] = field(repr=False, compare=False, default_factory=dict)

    @property
    def subcategories(self) -> tuple[Subcategory, ...]:
        """Every subcategory, domain by domain, in file order."""
        return tuple(s for d in self.domains for s in d.subcategories)

    @property
    def subcategory_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.subcategories)

    def subcategory(self, subcategory_id: str) -> Subcategory:
        """The subcategory with this id; a `KeyError` suggests the closest ids on a typo."""
        return self._lookup("subcategory", subcategory_id, self._subcategories)

    def domain(self, domain_id: str) -> Domain:
        """The domain with this id; a `KeyError` suggests the closest ids on a typo."""
        return self._lookup("domain", domain_id, {d.id: d for d in self.domains})

    def domain_of(self, subcategory_id: str) -> Domain:
        """The domain a subcategory belongs to."""
        return self.domain(self.subcategory(subcategory_id).domain)

    def rules_for(self, subcategory_id: str) -> tuple[Rule, ...]:
        """The rules of a subcategory."""
        return self.subcategory(subcategory_id).rules

    def rule(self, rule_id: str) -> Rule:
        """A rule by its id (e.g. ``"VIO-1"``)."""
        return self._lookup("rule", rule_id, {r.id: r for s in self.subcategories for r in s.rules})

    def query_style(self, style_id: str) -> QueryStyle:
        """A query style by its id."""
        return self._lookup("query style", style_id, {s.id: s for s in self.query_styles})

    @property
    def query_style_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.query_styles)

    def _lookup(self, kind: str, key: str, table: Mapping[str, _T]) -> _T:
        """``table[key]``, or a `KeyError` naming the kind, the taxonomy and the closest ids."""
        try:
            return table[key]
        except KeyError:
            close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(f"unknown {kind} {key!r} in taxonomy {self.source}{hint}") from None

    def to_dict(self) -> dict[str, Any]:
        """The taxonomy in the file schema (round-trips through [`Taxonomy.from_dict`], same ``sha``)."""
        return {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "severity_levels": [{"id": s.id, "description": s.description} for s in self.severity_levels],
            "query_styles": [
                {"id": s.id, "description": s.description, "harmful": s.harmful} for s in self.query_styles
            ],
            "domains": [
                {
                    "id": d.id,
                    "name": d.name,
                    "description": d.description,
                    "subcategories": [
                        {
                            "id": s.id,
                            "name": s.name,
                            "description": s.description,
                            "severity": s.severity,
                            "video_specific": s.video_specific,
                            "rules": [
                                {
                                    "id": r.id,
                                    "unsafe_if": r.unsafe_if,
                                    "safe_response": r.safe_response,
                                    "example_intents": list(r.example_intents),
                                }
                                for r in s.rules
                            ],
                        }
                        for s in d.subcategories
                    ],
                }
                for d in self.domains
            ],
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> Taxonomy:
        """Validate parsed taxonomy data and build a `Taxonomy`; raises [`TaxonomyError`] listing every problem."""
        return _Validator(source).build(data)


def _canonical_sha(data: dict[str, Any]) -> str:
    payload = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class _Validator:
    """Walks the parsed YAML once, collecting every problem with its location before raising."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []

    def build(self, data: Any) -> Taxonomy:
        if not isinstance(data, dict):
            raise TaxonomyError(self.source, [f"top level must be a mapping, got {type(data).__name__}"])
        self._keys(data, _TOP_KEYS, "top level")
        version = data.get("version")
        if "version" in data and (isinstance(version, bool) or version not in SUPPORTED_VERSIONS):
            self.problems.append(
                f"version: unsupported version {version!r}; supported: {list(SUPPORTED_VERSIONS)}"
            )
        name = self._text(data, "name", "top level")
        description = self._text(data, "description", "top level")

        severities = [
            SeverityLevel(self._ident(item, _STYLE_ID, where), self._text(item, "description", where))
            for where, item in self._items(data, "severity_levels", _SEVERITY_KEYS, "severity_levels")
        ]
        self._unique([s.id for s in severities], "severity_levels", "severity level id")
        severity_ids = {s.id for s in severities}

        styles = []
        for where, item in self._items(data, "query_styles", _STYLE_KEYS, "query_styles"):
            harmful = item.get("harmful")
            if "harmful" in item and not isinstance(harmful, bool):
                self.problems.append(f"{where}.harmful: must be true or false, got {harmful!r}")
            styles.append(
                QueryStyle(
                    self._ident(item, _STYLE_ID, where), self._text(item, "description", where), bool(harmful)
                )
            )
        self._unique([s.id for s in styles], "query_styles", "query style id")

        domains = []
        for where, item in self._items(data, "domains", _DOMAIN_KEYS, "domains"):
            domain_id = self._ident(item, _DOMAIN_ID, where)
            subcategories = tuple(
                self._subcategory(sub, sub_where, domain_id, severity_ids)
                for sub_where, sub in self._items(
                    item, "subcategories", _SUBCATEGORY_KEYS, f"{where}.subcategories"
                )
            )
            domains.append(
                Domain(
                    domain_id,
                    self._text(item, "name", where),
                    self._text(item, "description", where),
                    subcategories,
                )
            )
        self._unique([d.id for d in domains], "domains", "domain id")
        subcategories = [s for d in domains for s in d.subcategories]
        self._unique([s.id for s in subcategories], "domains", "subcategory id")
        self._unique([r.id for s in subcategories for r in s.rules], "domains", "rule id")

        if self.problems:
            raise TaxonomyError(self.source, self.problems)
        taxonomy = Taxonomy(
            version=version,
            name=name,
            description=description,
            domains=tuple(domains),
            severity_levels=tuple(severities),
            query_styles=tuple(styles),
            sha="",
            source=self.source,
            _subcategories={s.id: s for s in subcategories},
        )
        # Hash the normalised form, so defaults made explicit (video_specific) and formatting don't matter.
        object.__setattr__(taxonomy, "sha", _canonical_sha(taxonomy.to_dict()))
        return taxonomy

    def _subcategory(self, item: dict, where: str, domain_id: str, severity_ids: set[str]) -> Subcategory:
        sub_id = self._ident(item, _SUBCATEGORY_ID, where)
        if sub_id and domain_id and not sub_id.startswith(domain_id + "."):
            self.problems.append(f"{where}.id: {sub_id!r} must start with its domain id {domain_id + '.'!r}")
        severity = self._text(item, "severity", where)
        if severity and severity not in severity_ids:
            self.problems.append(
                f"{where}.severity: {severity!r} is not a declared severity level {sorted(severity_ids)}"
            )
        video_specific = item.get("video_specific", False)
        if not isinstance(video_specific, bool):
            self.problems.append(f"{where}.video_specific: must be true or false, got {video_specific!r}")
        rules = []
        for rule_where, rule in self._items(item, "rules", _RULE_KEYS, f"{where}.rules"):
            intents = rule.get("example_intents")
            if "example_intents" in rule and (
                not isinstance(intents, list)
                or not intents
                or not all(isinstance(i, str) and i.strip() for i in intents)
            ):
                self.problems.append(
                    f"{rule_where}.example_intents: must be a non-empty list of non-empty strings"
                )
                intents = []
            rules.append(
                Rule(
                    id=self._ident(rule, _RULE_ID, rule_where),
                    unsafe_if=self._text(rule, "unsafe_if", rule_where),
                    safe_response=self._text(rule, "safe_response", rule_where),
                    example_intents=tuple(i.strip() for i in intents or ()),
                )
            )
        return Subcategory(
            id=sub_id,
            domain=domain_id,
            name=self._text(item, "name", where),
            description=self._text(item, "description", where),
            severity=severity,
            video_specific=bool(video_specific),
            rules=tuple(rules),
        )

    def _keys(self, item: dict, allowed: dict[str, bool], where: str) -> None:
        for key in item:
            if key not in allowed:
                hint = did_you_mean(str(key), allowed)
                self.problems.append(f"{where}: unknown key {key!r}{hint}; allowed: {sorted(allowed)}")
        for key, required in allowed.items():
            if required and key not in item:
                self.problems.append(f"{where}: missing required key {key!r}")

    def _items(self, parent: dict, key: str, allowed: dict[str, bool], where: str) -> list[tuple[str, dict]]:
        """The mappings of the list ``parent[key]``, each with its location; problems recorded."""
        if key not in parent:
            return []  # reported as a missing key by _keys
        value = parent[key]
        if not isinstance(value, list) or not value:
            self.problems.append(f"{where}: must be a non-empty list")
            return []
        out = []
        for i, item in enumerate(value):
            label = f"{where}[{i}]"
            if not isinstance(item, dict):
                self.problems.append(f"{label}: must be a mapping, got {type(item).__name__}")
                continue
            if isinstance(item.get("id"), str):
                label += f" (id {item['id']!r})"
            self._keys(item, allowed, label)
            out.append((label, item))
        return out

    def _text(self, item: dict, key: str, where: str) -> str:
        if key not in item:
            return ""  # reported as a missing key by _keys
        value = item[key]
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"{where}.{key}: must be a non-empty string, got {value!r}")
            return ""
        return " ".join(value.split()) if "\n" in value.strip() else value.strip()

    def _ident(self, item: dict, pattern: re.Pattern[str], where: str) -> str:
        value = self._text(item, "id", where)
        if value and not pattern.match(value):
            self.problems.append(f"{where}.id: {value!r} does not match {pattern.pattern}")
        return value

    def _unique(self, ids: list[str], where: str, what: str) -> None:
        seen: set[str] = set()
        for i in ids:
            if i and i in seen:
                self.problems.append(f"{where}: duplicate {what} {i!r}")
            seen.add(i)


def load_taxonomy(path: str | os.PathLike[str] | Taxonomy | None = None) -> Taxonomy:
    """Load and validate a taxonomy.

    Args:
        path: A YAML file in the taxonomy schema, an already loaded `Taxonomy` (returned as is), or
            ``None`` for the packaged default (``safevid_taxonomy_v1.yaml``).

    Returns:
        The validated [`Taxonomy`].

    Raises:
        TaxonomyError: The file is not valid YAML or does not follow the schema; the message names the
            file and every offending key.
        FileNotFoundError: ``path`` does not exist.

    Example:

    ```python
    >>> from safevid.taxonomy import load_taxonomy
    >>> taxonomy = load_taxonomy()
    >>> taxonomy.subcategory("violence.graphic_violence").rules[0].id
    'VIO-1'

    ```
    """
    if isinstance(path, Taxonomy):
        return path
    if path is None:
        return _default_taxonomy()
    path = Path(path)
    return _parse(path.read_text(encoding="utf-8"), str(path))


@lru_cache(maxsize=1)
def _default_taxonomy() -> Taxonomy:
    resource = resources.files("safevid.taxonomy").joinpath(DEFAULT_TAXONOMY_FILE)
    return _parse(resource.read_text(encoding="utf-8"), f"safevid/taxonomy/{DEFAULT_TAXONOMY_FILE}")


def _parse(text: str, source: str) -> Taxonomy:
    try:
        data = read_yaml(text)  # the configs' YAML reading: safe, YAML 1.2 booleans, duplicate keys refused
    except yaml.YAMLError as exc:
        raise TaxonomyError(source, [f"not valid YAML: {exc}"]) from exc
    return Taxonomy.from_dict(data, source=source)
