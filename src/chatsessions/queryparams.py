"""Query parameters: one model per route parses them and writes their OpenAPI entries.

A route's query string is a :class:`QueryModel`. Each field is one parameter, typed with
one of the strict parsers below, so a single declaration decides what a request may send
(anything else is a 400 naming the parameter, see :mod:`chatsessions.errors`) and what
the OpenAPI document says about it (docs/contract.md#parameters-and-errors):

- integers are plain decimal digits ≥ 1 (``1e3``, ``0x10``, ``+5``, ``0`` are refused),
  and a value above the parameter's cap counts as the cap;
- booleans are ``true``/``false``/``1``/``0`` in any case;
- words (``status``, ``format``, …) are accepted in any case;
- a parameter given empty (``limit=``) counts as absent; one given twice with different
  values is refused.

>>> class Page(QueryModel):
...     limit: Annotated[int | None, PositiveInt(cap=1000)] = None
>>> Page.from_params({"limit": ["5000"]}).limit
1000
>>> Page.openapi_parameters()[0]["schema"] == {"type": "integer", "minimum": 1}
True
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic import ValidationError as PydanticValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema
from starlette.requests import Request

from chatsessions.errors import InvalidParameter

__all__ = ["Annotated", "Flag", "PositiveInt", "QueryModel", "Text", "Word"]

_DIGITS = re.compile(r"[0-9]+")  # used with fullmatch: "5\n" is not plain digits


def _shown(raw: str) -> str:
    return repr(raw[:40])


class _Parser(ABC):
    """Pydantic metadata: validate the raw query string with :meth:`parse`, document the
    parameter with :meth:`json_schema`."""

    @abstractmethod
    def parse(self, raw: str) -> Any:
        """The value of a non-empty raw parameter, or ``ValueError`` saying what is wrong."""

    @abstractmethod
    def json_schema(self) -> JsonSchemaValue:
        """The parameter's schema in the OpenAPI document."""

    def __get_pydantic_core_schema__(
        self, _source: Any, _handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self._validate)

    def __get_pydantic_json_schema__(
        self, _schema: CoreSchema, _handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return self.json_schema()

    def _validate(self, raw: object) -> Any:
        if not isinstance(raw, str):
            raise ValueError("must be a string")  # pragma: no cover - queries are strings
        return self.parse(raw)


@dataclass(frozen=True)
class PositiveInt(_Parser):
    """A whole number ≥ 1 in plain decimal digits; above ``cap`` counts as ``cap``."""

    cap: int | None = None

    def parse(self, raw: str) -> int:
        """``"25"`` → 25; ``"1e3"``, ``"0x10"``, ``"+5"``, ``" 5"``, ``"-1"``, ``"0"`` → error."""
        if not _DIGITS.fullmatch(raw):
            raise ValueError(f"must be a whole number ≥ 1 in plain digits, got {_shown(raw)}")
        digits = raw.lstrip("0")  # int() refuses over 4,300 digits, leading zeros included
        if not digits:
            raise ValueError(f"must be ≥ 1, got {_shown(raw)}")
        if self.cap is not None and len(digits) > len(str(self.cap)):
            return self.cap
        if len(digits) > 4000:
            raise ValueError("is too large")
        value = int(digits)
        return min(value, self.cap) if self.cap is not None else value

    def json_schema(self) -> JsonSchemaValue:
        """An integer ≥ 1 (a larger value than the cap is accepted: it counts as the cap)."""
        return {"type": "integer", "minimum": 1}


@dataclass(frozen=True)
class Flag(_Parser):
    """``true``/``false``/``1``/``0``, any case."""

    def parse(self, raw: str) -> bool:
        """``"TRUE"`` → True, ``"0"`` → False."""
        lowered = raw.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError(f"must be true, false, 1 or 0, got {_shown(raw)}")

    def json_schema(self) -> JsonSchemaValue:
        """A boolean (``1``/``0`` and any case are accepted too, as the description says)."""
        return {"type": "boolean"}


@dataclass(frozen=True)
class Word(_Parser):
    """One of a set of words in any case, each mapped to its value.

    ``spellings`` pairs each accepted spelling (compared lowercased) with the value it
    stands for; ``expected`` is what the error says the parameter must be.
    """

    spellings: tuple[tuple[str, str], ...]
    expected: str

    @classmethod
    def of(cls, words: Iterable[str], expected: str | None = None) -> Word:
        """Words that stand for themselves (lowercased)."""
        listed = tuple(words)
        return cls(
            tuple((w.lower(), w.lower()) for w in listed),
            expected or f"must be one of {', '.join(listed)}",
        )

    def parse(self, raw: str) -> str:
        """The value of ``raw`` whatever its case."""
        lowered = raw.lower()
        for spelling, value in self.spellings:
            if spelling == lowered:
                return value
        raise ValueError(f"{self.expected}, got {_shown(raw)}")

    def json_schema(self) -> JsonSchemaValue:
        """A string matching one of the spellings in any case (a pattern, since an
        ``enum`` would say the case matters)."""
        alternatives = "|".join(
            "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in s)
            for s, _value in self.spellings
        )
        return {"type": "string", "pattern": f"^(?:{alternatives})$"}


@dataclass(frozen=True)
class Text(_Parser):
    """Any string (e.g. an opaque cursor)."""

    def parse(self, raw: str) -> str:
        """The string itself."""
        return raw

    def json_schema(self) -> JsonSchemaValue:
        """A string."""
        return {"type": "string"}


class QueryModel(BaseModel):
    """A route's query parameters. Fields are parameters (their names as on the wire);
    each is typed ``Annotated[T | None, <parser>]`` with a default, and its
    ``Field(description=…)`` is its OpenAPI description.

    ``documented_required`` names parameters the document marks required although the
    model lets them be absent (e.g. ``hours`` of a listing, which a cursor may replace;
    the service says when it is missing).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    documented_required: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_request(cls, request: Request) -> Self:
        """Parse the request's query string (usable as a FastAPI dependency)."""
        params = request.query_params
        return cls.from_params({name: params.getlist(name) for name in cls.wire_names()})

    @classmethod
    def wire_names(cls) -> list[str]:
        """The parameters' names in the query string (a field's alias, e.g. ``hub.mode``)."""
        return [field.alias or name for name, field in cls.model_fields.items()]

    @classmethod
    def from_params(cls, params: Mapping[str, list[str]]) -> Self:
        """Parse each parameter's raw values; the first bad one is a 400 naming it."""
        given: dict[str, str] = {}
        for name in cls.wire_names():
            values = {v for v in params.get(name, ()) if v != ""}
            if len(values) > 1:
                raise InvalidParameter(name, "is given more than once with different values")
            if values:
                given[name] = values.pop()
        try:
            return cls.model_validate(given)
        except PydanticValidationError as exc:
            first = exc.errors(include_url=False)[0]
            message = str(first["msg"]).removeprefix("Value error, ")
            raise InvalidParameter(str(first["loc"][0]), message) from None

    @classmethod
    def openapi_parameters(cls) -> list[dict[str, Any]]:
        """The ``parameters`` entries of the OpenAPI operation, in declaration order."""
        properties = cls.model_json_schema()["properties"]
        out = []
        for attribute, field in cls.model_fields.items():
            name = field.alias or attribute
            schema = {
                k: v
                for k, v in properties[name].items()
                if k not in ("title", "description", "default")
            }
            entry: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": field.is_required() or attribute in cls.documented_required,
                "schema": schema,
            }
            if field.description:
                entry["description"] = field.description
            out.append(entry)
        return out

    @classmethod
    def openapi(cls) -> dict[str, Any]:
        """``openapi_extra`` of a route whose query is this model."""
        return {"parameters": cls.openapi_parameters()}
