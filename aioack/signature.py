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
        bound = self._bind(tuple(args), kwargs)
        bound.apply_defaults()
        values: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            try:
                values[name] = self._adapters[name].validate_python(value)
            except ValidationError as exc:
                raise InvalidArguments(f"{self._name}: argument {name!r}: {_first(exc)}") from exc
        if self.context_param is not None:
            values[self.context_param] = context
        ordered = {name: values[name] for name in self.full.parameters if name in values}
        call = inspect.BoundArguments(self.full, ordered)
        return call.args, call.kwargs

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
