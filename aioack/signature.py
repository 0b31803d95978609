"""Checking a task's arguments against its signature, with pydantic.

The producer validates and turns arguments into JSON before publishing, so a
wrong argument fails at the call site; the worker validates the JSON back into
typed values (a ``datetime`` parameter gets a ``datetime``).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from aioack.errors import InvalidArguments


class TaskSignature:
    """The call shape of a task function, minus its TaskContext parameter."""

    def __init__(self, fn: Callable[..., Any], context_type: type) -> None:
        self._name = getattr(fn, "__qualname__", repr(fn))
        self.full = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
        self.context_param = next(
            (name for name in self.full.parameters if hints.get(name) is context_type), None
        )
        params = [p for p in self.full.parameters.values() if p.name != self.context_param]
        self.public = self.full.replace(parameters=params)
        self._adapters = {p.name: TypeAdapter(_annotation(p, hints)) for p in params}
        # Every parameter takes a keyword: the worker may call fn(**values)
        # and skip inspect's binding, the costliest step per task.
        keywordable = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        self._keyword_call = all(p.kind in keywordable for p in self.full.parameters.values())
        self._positional = [
            p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        ]
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self._required = [p.name for p in params if p.default is p.empty]

    def to_wire(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """Validate a call and return its JSON-ready ``(args, kwargs)``.

        Raises:
            InvalidArguments: wrong arity, a value that does not validate, or
                one that cannot be represented as JSON.
        """
        bound = self._bind(args, kwargs)
        for name, value in bound.arguments.items():
            adapter = self._adapters[name]
            try:
                bound.arguments[name] = adapter.dump_python(
                    adapter.validate_python(value), mode="json"
                )
            except ValidationError as exc:
                raise InvalidArguments(f"{self._name}: argument {name!r}: {_first(exc)}") from exc
            except PydanticSerializationError as exc:
                raise InvalidArguments(
                    f"{self._name}: argument {name!r} cannot be sent as JSON: {exc}"
                ) from exc
        return list(bound.args), dict(bound.kwargs)

    def from_wire(
        self, args: list[Any], kwargs: dict[str, Any], context: object
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Validate wire arguments into the call the function receives.

        Raises:
            InvalidArguments: the message's arguments do not fit the signature.
        """
        fast = self._keyword_values(args, kwargs) if self._keyword_call else None
        if fast is not None:
            values = self._validate(fast)
            for name, default in self._defaults.items():
                values.setdefault(name, default)  # defaults are used as written
            if self.context_param is not None:
                values[self.context_param] = context
            return (), values
        bound = self._bind(tuple(args), kwargs)
        bound.arguments.update(self._validate(dict(bound.arguments)))
        bound.apply_defaults()
        if self.context_param is not None:
            bound.arguments[self.context_param] = context
        ordered = {n: bound.arguments[n] for n in self.full.parameters if n in bound.arguments}
        call = inspect.BoundArguments(self.full, ordered)
        return call.args, call.kwargs

    def _keyword_values(self, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """Map a well-formed call to {name: value}; None sends it the slow, exact way."""
        if len(args) > len(self._positional):
            return None
        values = dict(zip(self._positional, args, strict=False))
        for name, value in kwargs.items():
            if name in values or name not in self._adapters:
                return None
            values[name] = value
        if any(name not in values for name in self._required):
            return None
        return values

    def _validate(self, values: dict[str, Any]) -> dict[str, Any]:
        validated: dict[str, Any] = {}
        for name, value in values.items():
            try:
                validated[name] = self._adapters[name].validate_python(value)
            except ValidationError as exc:
                raise InvalidArguments(f"{self._name}: argument {name!r}: {_first(exc)}") from exc
        return validated

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            return self.public.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self._name}{self.public}: {exc}") from exc


def _annotation(param: inspect.Parameter, hints: dict[str, Any]) -> Any:
    annotation = hints.get(param.name, Any)
    if param.kind is inspect.Parameter.VAR_POSITIONAL:
        return tuple[annotation, ...]  # type: ignore[valid-type]
    if param.kind is inspect.Parameter.VAR_KEYWORD:
        return dict[str, annotation]  # type: ignore[valid-type]
    return annotation


def _first(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(map(str, error["loc"]))
    return f"{error['msg']}" + (f" at {where}" if where else "")
