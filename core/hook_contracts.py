"""The hook contracts as the host uses them, read once from ``core/hookspecs.py``.

A spec's ``@contract`` gives its convention and phase, its return annotation the
answer type. Reading them here (and nowhere else) keeps the call sites, the
dispatcher and ``docs/hooks.md`` from each deciding for themselves what a hook is.
Answer checks are built once per hook: the common case, an answer that already
has the declared type, costs an ``isinstance`` or two; only a different shape is
handed to ``msgspec.convert``.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec

from ordnung.core import hookspecs
from ordnung.core.hookspecs import Convention, Phase

Check = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class HookContract:
    """What the spec of one hook declares."""

    name: str
    convention: Convention
    phase: Phase
    #: the declared answer type (the return annotation without ``None``)
    answer: Any
    #: the first paragraph of the spec's docstring, on one line
    summary: str
    #: the spec function itself (its signature is the hook's)
    spec: Callable[..., Any]

    @property
    def answer_name(self) -> str:
        return type_name(self.answer)


@cache
def contracts() -> dict[str, HookContract]:
    """Every hook's contract, in the order the spec module declares them."""
    out: dict[str, HookContract] = {}
    for name, fn in vars(hookspecs).items():
        if not (name.startswith("ordnung_") and inspect.isfunction(fn)):
            continue
        convention = getattr(fn, "ordnung_convention", None)
        phase = getattr(fn, "ordnung_phase", None)
        if convention is None or phase is None:
            raise TypeError(f"hook spec {name} declares no @contract(convention, phase)")
        answer = _without_none(typing.get_type_hints(fn)["return"])
        doc = inspect.getdoc(fn) or ""
        out[name] = HookContract(name=name, convention=convention, phase=phase, answer=answer,
                                 summary=" ".join(doc.split("\n\n", 1)[0].split()), spec=fn)
    return out


def contract_of(hook: str) -> HookContract:
    try:
        return contracts()[hook]
    except KeyError:
        raise KeyError(f"no hook spec named {hook!r}") from None


@cache
def after_commit_hooks() -> tuple[str, ...]:
    """The hooks the dispatcher runs once a change is committed, as the specs declare
    (asked for every event: worked out once)."""
    return tuple(c.name for c in contracts().values() if c.phase == "after-commit")


def _without_none(tp: Any) -> Any:
    if _is_union(tp):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if not members:
            return type(None)
        return members[0] if len(members) == 1 else typing.Union[tuple(members)]  # noqa: UP007
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def type_name(tp: Any) -> str:
    """A type as a reader writes it: ``list[Discount | GiftLine | Note]``, ``TaxAnswer``."""
    if tp is type(None):
        return "None"
    if tp is Any:
        return "Any"
    if _is_union(tp):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    origin = typing.get_origin(tp)
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


def answer_check(tp: Any) -> Check:
    """A function that returns the answer in the declared type ``tp`` (converted with
    msgspec when it has another shape) or raises ``msgspec.ValidationError``."""
    if tp is Any or tp is type(None):
        return _as_is  # nothing to check: any answer, or answers that are ignored
    if _is_union(tp):
        return _union_check(typing.get_args(tp))
    origin = typing.get_origin(tp)
    if origin in (list, collections.abc.Sequence):
        item = typing.get_args(tp)[0]
        return _sequence_check(answer_check(item), _plain_classes(item))
    plain = origin or tp

    def check(value: Any) -> Any:
        if isinstance(value, plain):
            return value
        return msgspec.convert(value, tp)

    return check


def _as_is(value: Any) -> Any:
    return value


def _union_check(members: tuple[Any, ...]) -> Check:
    # msgspec cannot convert to a union of several untagged Structs: try each in turn
    classes = tuple(typing.get_origin(m) or m for m in members)
    checks = [answer_check(m) for m in members]
    expected = " | ".join(type_name(m) for m in members)

    def check(value: Any) -> Any:
        if isinstance(value, classes):
            return value
        for member in checks:
            try:
                return member(value)
            except (msgspec.ValidationError, TypeError):
                continue
        raise msgspec.ValidationError(f"Expected `{expected}`, got `{type(value).__name__}`")

    return check


def _plain_classes(tp: Any) -> tuple[type, ...] | None:
    """The classes an isinstance check settles ``tp`` with (a class, or a union of
    classes), or None when it takes more (a parametrised type, ``Any``)."""
    members = typing.get_args(tp) if _is_union(tp) else (tp,)
    if all(isinstance(m, type) and typing.get_origin(m) is None for m in members):
        return tuple(members)
    return None


def _sequence_check(item: Check, classes: tuple[type, ...] | None) -> Check:
    def check(value: Any) -> Any:
        if classes is not None and type(value) is list:
            for v in value:
                if not isinstance(v, classes):
                    break
            else:
                return value  # already right: the plugin's own list, unchanged
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise msgspec.ValidationError(f"Expected a list, got `{type(value).__name__}`")
        return [item(v) for v in value]

    return check
