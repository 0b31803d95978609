"""Checking a task's arguments against its signature, with pydantic.

The producer validates and turns arguments into JSON before publishing, so a
wrong argument fails at the call site; the worker validates the JSON back into
typed values (a ``datetime`` parameter gets a ``datetime``).

Strict by default (pydantic's strict mode): the call site takes a value of the
parameter's own type, never a conversion (``"2"`` is not an ``int``, ``True``
is not an ``int``, ``b"x"`` is not a ``str``). And the call site proves each
value survives the trip: it validates the JSON it is about to send exactly as
the worker will, and refuses the call when what would arrive differs from what
was given (a set under ``Any`` would arrive as a list, NaN as null). So a task
receives what its caller passed, or the caller gets ``InvalidArguments``.

The worker validates the wire in pydantic's JSON mode, with the task's
strictness: JSON has no datetime, set or tuple, so their JSON forms (an ISO
string, an array) are what strict JSON mode takes for them, while ``"2"``
still is no ``int``.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, from_json, to_json

from aioack.errors import InvalidArguments


class TaskSignature:
    """The call shape of a task function, minus its TaskContext parameter."""

    def __init__(self, fn: Callable[..., Any], context_type: type, *, strict: bool = True) -> None:
        self._name = getattr(fn, "__qualname__", repr(fn))
        #: pydantic's strict mode at the call site and on the wire (``strict_arguments``).
        self.strict = strict
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
            bound.arguments[name] = self._wire_value(name, value)
        return list(bound.args), dict(bound.kwargs)

    def to_wire_after(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """``to_wire`` for a call whose first positional argument comes later.

        A workflow step receives the previous step's result as its first
        argument; what the call site gave is checked now: the arity (with
        room for that argument) and each value given.

        Raises:
            InvalidArguments: as ``to_wire``.
        """
        bound = self._bind((_LATER, *args), kwargs)
        for name, value in bound.arguments.items():
            if value is _LATER:
                continue
            if isinstance(value, tuple) and value[:1] == (_LATER,):  # *args took it
                rest = self._wire_value(name, value[1:])
                bound.arguments[name] = (_LATER, *rest)
            else:
                bound.arguments[name] = self._wire_value(name, value)
        later, *given = bound.args
        assert later is _LATER  # bound first: nothing else can sit there
        return given, dict(bound.kwargs)

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

    def _wire_value(self, name: str, value: Any) -> Any:
        """``value`` as JSON, once the worker is sure to get back exactly what it holds.

        Raises:
            InvalidArguments: it does not validate, cannot be JSON, or would
                arrive changed (the message names the parameter and what to do).
        """
        adapter = self._adapters[name]
        try:
            validated = adapter.validate_python(value, strict=self.strict)
        except ValidationError as exc:
            raise InvalidArguments(f"{self._name}: argument {name!r}: {_first(exc)}") from exc
        try:
            wire = adapter.dump_json(validated)
        except (PydanticSerializationError, UnicodeError, ValueError) as exc:
            # bytes that are not UTF-8 raise UnicodeDecodeError from inside pydantic.
            raise InvalidArguments(
                f"{self._name}: argument {name!r} cannot be sent as JSON: {_reason(exc, validated)}"
                f"{_hint(validated)}"
            ) from exc
        if type(validated) not in _SURVIVES_JSON:
            # What the worker will make of it, made here: a change is refused now.
            try:
                arrives = adapter.validate_json(wire, strict=self.strict)
            except ValidationError:
                arrives = _UNREADABLE
            if not same_value(arrives, validated):
                raise InvalidArguments(
                    f"{self._name}: argument {name!r}: {_describe(validated)} would not "
                    f"arrive unchanged through JSON (the task would get "
                    f"{_describe(arrives)}){_hint(validated)}"
                )
        return from_json(wire)

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
        """Wire values (decoded JSON) into typed ones, in JSON mode, as the producer checked."""
        validated: dict[str, Any] = {}
        strict = self.strict
        for name, value in values.items():
            try:
                validated[name] = self._adapters[name].validate_json(to_json(value), strict=strict)
            except ValidationError as exc:
                raise InvalidArguments(f"{self._name}: argument {name!r}: {_first(exc)}") from exc
        return validated

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            return self.public.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self._name}{self.public}: {exc}") from exc


class _Later:
    """Stands for the argument a workflow step receives from the step before it."""

    def __repr__(self) -> str:
        return "<the previous step's result>"


_LATER = _Later()


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


#: Types whose every value comes back from JSON equal and of the same type
#: (checked values of these skip the round trip: the common case stays cheap).
_SURVIVES_JSON: frozenset[type] = frozenset({str, int, bool, type(None)})


class _Unreadable:
    """Stands for a JSON value the worker's validation would refuse."""

    def __repr__(self) -> str:
        return "an error (the JSON does not validate back)"


_UNREADABLE = _Unreadable()


def same_value(arrived: Any, sent: Any) -> bool:
    """Equal, and of the same types all the way down the built-in containers.

    ``==`` alone would pass ``1 == True``, ``(1,) == [1]``'s elements, an
    IntEnum and its int: each a silent change of type.
    """
    if type(arrived) is not type(sent):
        return False
    if isinstance(sent, list | tuple):
        return len(arrived) == len(sent) and all(map(same_value, arrived, sent))
    if isinstance(sent, dict):
        return arrived.keys() == sent.keys() and all(
            same_value(arrived[key], value) for key, value in sent.items()
        )
    if isinstance(sent, float) and sent != sent:  # NaN is never equal to itself
        return False
    if isinstance(sent, BaseModel):  # ``==`` on models compares fields with ``==``
        return same_value(_model_fields(arrived), _model_fields(sent))
    if dataclasses.is_dataclass(sent) and not isinstance(sent, type):
        return same_value(_dataclass_fields(arrived), _dataclass_fields(sent))
    return bool(arrived == sent)


def _model_fields(model: BaseModel) -> dict[str, Any]:
    return {**model.__dict__, **(model.__pydantic_extra__ or {})}


def _dataclass_fields(instance: Any) -> dict[str, Any]:
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}


def _describe(value: Any) -> str:
    if isinstance(value, _Unreadable) or value is None:
        return repr(value)
    text = repr(value)
    shown = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {shown}"


def _hint(value: Any) -> str:
    """What to change, for the values that most often do not survive JSON."""
    if isinstance(value, bytes | bytearray):
        return (
            ": bytes travel as UTF-8 text; send other bytes as base64 text in a str "
            "parameter (base64.b64encode(data).decode()) and decode them in the task"
        )
    if isinstance(value, float):
        return ": JSON has no NaN or infinity; send None or a string"
    if isinstance(value, str):
        return " (a lone surrogate, which UTF-8 cannot encode)"
    return (
        ": annotate the parameter with the exact type (e.g. set[int], datetime, "
        "tuple[int, ...], dict[int, str]) so the worker rebuilds it, or pass plain "
        "JSON values (str, int, float, bool, None, list, dict with str keys)"
    )


def _reason(exc: Exception, value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "bytes that are not UTF-8 text"
    return str(exc).splitlines()[0]
