"""Decision trees: which questions volunteers are asked, and after which answers.

A :class:`Schema` fixes the order of answers, which is both the catalogue's vote
columns and the model's output order. Answers of one question are contiguous.
A question may follow several answers (GZ2 needs this), so the tree is a DAG.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from galaxymorph.files import FORMATS, parse_mapping, read_mapping

__all__ = ["Question", "Schema", "SchemaError", "get_schema", "list_schemas"]

SEPARATOR = "_"


class SchemaError(ValueError):
    """A decision tree that cannot be used, with the culprit named."""


@dataclass(frozen=True)
class Question:
    """One question: its answers, and the answers (full column names) that lead to it."""

    name: str
    answers: tuple[str, ...]
    after: tuple[str, ...] = ()
    text: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "answers", tuple(self.answers))
        object.__setattr__(self, "after", tuple(self.after))

    @property
    def columns(self) -> tuple[str, ...]:
        """Full answer names, ``question_answer``, as catalogue columns."""
        return tuple(f"{self.name}{SEPARATOR}{a}" for a in self.answers)

    @property
    def is_root(self) -> bool:
        return not self.after


@dataclass(frozen=True, eq=False)
class Schema:
    """An ordered decision tree. Build one from :class:`Question` objects, a dict or a file."""

    name: str
    questions: tuple[Question, ...]
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "questions", tuple(self.questions))
        self._validate()

    # ----------------------------------------------------------------- checks
    def _validate(self) -> None:
        if not self.questions:
            raise SchemaError(f"schema {self.name!r} has no questions")
        seen_questions: set[str] = set()
        for q in self.questions:
            if not q.name or SEPARATOR in q.name:
                raise SchemaError(
                    f"question name {q.name!r} must be non-empty and contain no {SEPARATOR!r} "
                    "(it separates question from answer in column names)"
                )
            if q.name in seen_questions:
                raise SchemaError(f"duplicate question name {q.name!r} in schema {self.name!r}")
            seen_questions.add(q.name)
            if len(q.answers) < 2:
                raise SchemaError(f"question {q.name!r} needs at least two answers, has {len(q.answers)}")
            duplicates = sorted({a for a in q.answers if q.answers.count(a) > 1})
            if duplicates:
                raise SchemaError(f"duplicate answer {duplicates[0]!r} in question {q.name!r}")
        known = set(self.answers)
        for q in self.questions:
            for parent in q.after:
                if parent not in known:
                    hint = difflib.get_close_matches(parent, sorted(known), n=1)
                    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                    raise SchemaError(
                        f"question {q.name!r} follows unknown answer {parent!r}{suggestion}"
                    )
        if not any(q.is_root for q in self.questions):
            raise SchemaError(f"schema {self.name!r} has no first question (one with no `after`)")
        _ = self.topological_order  # raises on cycles

    # ------------------------------------------------------------- structure
    @cached_property
    def answers(self) -> tuple[str, ...]:
        """All answer columns in model output order."""
        return tuple(c for q in self.questions for c in q.columns)

    @property
    def question_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.questions)

    @property
    def n_answers(self) -> int:
        return len(self.answers)

    @property
    def n_questions(self) -> int:
        return len(self.questions)

    @cached_property
    def question_index(self) -> np.ndarray:
        """For each answer, the index of its question, shape (n_answers,)."""
        return np.repeat(np.arange(self.n_questions), [len(q.answers) for q in self.questions])

    @cached_property
    def slices(self) -> tuple[slice, ...]:
        """For each question, the slice of its answers in the output order."""
        ends = np.cumsum([len(q.answers) for q in self.questions])
        starts = ends - [len(q.answers) for q in self.questions]
        return tuple(slice(int(s), int(e)) for s, e in zip(starts, ends))

    @cached_property
    def answer_matrix(self) -> np.ndarray:
        """One-hot (n_answers, n_questions): ``x @ M`` sums answers per question."""
        m = np.zeros((self.n_answers, self.n_questions), dtype=np.float32)
        m[np.arange(self.n_answers), self.question_index] = 1.0
        return m

    @cached_property
    def parent_answers(self) -> tuple[tuple[int, ...], ...]:
        """For each question, the indices (in :attr:`answers`) of the answers leading to it."""
        position = {a: i for i, a in enumerate(self.answers)}
        return tuple(tuple(position[p] for p in q.after) for q in self.questions)

    @cached_property
    def topological_order(self) -> tuple[int, ...]:
        """Question indices such that every question comes after all its parents."""
        owner = dict(zip(self.answers, self.question_index.tolist()))
        parents = [{owner[p] for p in q.after} for q in self.questions]
        order: list[int] = []
        done: set[int] = set()
        remaining = list(range(self.n_questions))
        while remaining:
            ready = [i for i in remaining if parents[i] <= done]
            if not ready:
                stuck = ", ".join(repr(self.questions[i].name) for i in remaining)
                raise SchemaError(f"schema {self.name!r} has a cycle among questions {stuck}")
            order.extend(ready)
            done.update(ready)
            remaining = [i for i in remaining if i not in done]
        return tuple(order)

    def question(self, name: str) -> Question:
        for q in self.questions:
            if q.name == name:
                return q
        raise KeyError(_unknown("question", name, self.question_names))

    def answer_index(self, column: str) -> int:
        try:
            return self.answers.index(column)
        except ValueError:
            raise KeyError(_unknown("answer", column, self.answers)) from None

    # ------------------------------------------------------------ transforms
    def with_campaign(self, campaign: str) -> "Schema":
        """The same tree with ``-{campaign}`` appended to every question name.

        Votes from different campaigns (e.g. DECaLS DR5 and DR8) then live in
        separate columns and can be trained together without being mixed.
        """
        rename = {q.name: f"{q.name}-{campaign}" for q in self.questions}

        def column(col: str) -> str:
            q, a = col.split(SEPARATOR, 1)
            return f"{rename[q]}{SEPARATOR}{a}"

        questions = [
            Question(rename[q.name], q.answers, tuple(column(p) for p in q.after), q.text)
            for q in self.questions
        ]
        return Schema(f"{self.name}-{campaign}", questions, self.description)

    @classmethod
    def combine(cls, name: str, *schemas: "Schema") -> "Schema":
        """Concatenate trees (e.g. several campaigns) into one model output."""
        return cls(name, [q for s in schemas for q in s.questions], " + ".join(s.name for s in schemas))

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "questions": [
                {"name": q.name, "text": q.text, "answers": list(q.answers), "after": list(q.after)}
                for q in self.questions
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Schema":
        """A tree from plain data; a wrong shape is refused naming the key (``answers = "yes"`` is no list)."""
        questions = data.get("questions")
        if not isinstance(questions, list) or not all(isinstance(q, dict) for q in questions):
            raise SchemaError(f"schema definition needs 'questions', a list of tables, got {questions!r}")
        built = [
            Question(_text(q, "name", i), _texts(q, "answers", i), _texts(q, "after", i, []), _text(q, "text", i, ""))
            for i, q in enumerate(questions)
        ]
        return cls(_text(data, "name", None, "custom"), built, _text(data, "description", None, ""))

    @classmethod
    def from_file(cls, path: str | Path) -> "Schema":
        """Read a tree from TOML, YAML or JSON (same keys as :meth:`to_dict`)."""
        data = read_mapping(path, SchemaError)
        data.setdefault("name", Path(path).stem)
        try:
            return cls.from_dict(data)
        except SchemaError as err:
            raise SchemaError(f"{path}: {err}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


def _field(table: dict[str, Any], key: str, index: int | None, default: Any) -> Any:
    """``table[key]``; ``default`` None means the key is required."""
    if key not in table and default is None:
        raise SchemaError(f"schema definition is missing the key {key!r}{_where(index)}")
    return table.get(key, default)


def _where(index: int | None) -> str:
    return "" if index is None else f" in question {index + 1}"


def _text(table: dict[str, Any], key: str, index: int | None, default: str | None = None) -> str:
    value = _field(table, key, index, default)
    if not isinstance(value, str):
        raise SchemaError(f"{key!r}{_where(index)} must be text, got {value!r}")
    return value


def _texts(table: dict[str, Any], key: str, index: int, default: list[str] | None = None) -> tuple[str, ...]:
    """A list of text; a bare string would silently split into letters, so it is refused."""
    value = _field(table, key, index, default)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SchemaError(f"{key!r}{_where(index)} must be a list of text in brackets, got {value!r}")
    return tuple(value)


def _unknown(kind: str, name: str, choices: Iterable[str]) -> str:
    """The closest names when some are close, and always every valid one, so the fix needs no other command."""
    choices = list(choices)
    hint = difflib.get_close_matches(name, choices, n=3)
    return (f"unknown {kind} {name!r}" + (f"; closest: {', '.join(map(repr, hint))}" if hint else "")
            + f"; valid: {', '.join(choices)}")


# Same tree, other campaign names (Zoobot treats these as one tree with suffixed columns).
_ALIASES = {"gz_decals_dr8": "gz_decals_dr5", "gz_desi": "gz_decals_dr5"}


def list_schemas() -> list[str]:
    """Names of the built-in trees."""
    files = resources.files("galaxymorph") / "trees"
    return sorted([f.name.removesuffix(".toml") for f in files.iterdir() if f.name.endswith(".toml")] + list(_ALIASES))


def get_schema(name: str | Path, campaign: str | None = None) -> Schema:
    """A built-in tree by name, or a tree from a TOML/YAML/JSON file path.

    Args:
        name: ``gz_decals_dr5``, ``gz_decals_dr8``, ``gz_desi``, ``gz2``, or a file path.
        campaign: optional suffix for question names (e.g. ``"dr8"`` gives
            ``smooth-or-featured-dr8_smooth``), to keep campaigns' votes apart.

    Example:
        >>> get_schema("gz2").n_answers
        37
    """
    if Path(str(name)).suffix.lower() in FORMATS:
        schema = Schema.from_file(name)
    else:
        base = _ALIASES.get(str(name), str(name))
        resource = resources.files("galaxymorph") / "trees" / f"{base}.toml"
        if not resource.is_file():
            raise KeyError(_unknown("schema", str(name), list_schemas()))
        data = parse_mapping(resource.read_text(), "TOML", str(resource), SchemaError)
        data["name"] = str(name)
        schema = Schema.from_dict(data)
    return schema.with_campaign(campaign) if campaign else schema
