"""Frozen plain-data classes: `@record`, `replace`, `fields`, `factory`.

Like `@dataclass(frozen=True, slots=True, kw_only=True)`, without its cost: importing
dataclasses (it pulls in inspect, ast, dis, tokenize) and generating each class's
methods with exec took about half of the daemon's import time. A record's class body
declares annotated fields, optionally with defaults (`factory(dict)` for a fresh mutable
default); instances are built by keyword only, compare and hash by value, cannot be
changed, and `replace(record, **changes)` makes a changed copy. Imports nothing.
"""
from __future__ import annotations

__all__ = ["record", "replace", "fields", "factory"]


class factory:
    """A default made fresh for each instance, e.g. `env: dict = factory(dict)`."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


def record(cls):
    """Rebuild `cls` as a frozen, slotted record class of its annotated fields."""
    names = tuple(cls.__dict__.get("__annotations__", {}))
    body = {k: v for k, v in cls.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}
    body.update(__slots__=names, _fields=names,
                _defaults={n: cls.__dict__[n] for n in names if n in cls.__dict__},
                __init__=_init, __setattr__=_frozen, __delattr__=_frozen, __eq__=_eq,
                __hash__=_hash, __repr__=_repr, __reduce__=_reduce)
    return type(cls)(cls.__name__, cls.__bases__, body)


def replace(item, **changes):
    """A copy of `item` with some fields changed."""
    cls = type(item)
    copy = object.__new__(cls)
    for name in cls._fields:
        object.__setattr__(copy, name, changes.pop(name) if name in changes else getattr(item, name))
    if changes:
        raise TypeError(f"{cls.__name__}() has no field {', '.join(map(repr, changes))}")
    return copy


def fields(item_or_class) -> tuple:
    """The field names, in declaration order."""
    return item_or_class._fields


def _init(self, **values) -> None:
    cls = type(self)
    if len(values) == len(cls._fields) and all(name in values for name in cls._fields):
        for name in cls._fields:    # every field given: nothing to default or refuse
            object.__setattr__(self, name, values[name])
        return
    for name in cls._fields:
        if name in values:
            value = values.pop(name)
        elif name in cls._defaults:
            value = cls._defaults[name]
            value = value.make() if isinstance(value, factory) else value
        else:
            raise TypeError(f"{cls.__name__}() needs the field {name!r}")
        object.__setattr__(self, name, value)
    if values:
        raise TypeError(f"{cls.__name__}() has no field {', '.join(map(repr, values))}")


def _frozen(self, name, value=None) -> None:
    raise AttributeError(f"{type(self).__name__} is frozen: use replace(item, {name}=...)")


def _values(self) -> tuple:
    return tuple(getattr(self, name) for name in self._fields)


def _eq(self, other) -> bool:
    if type(other) is not type(self):
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self) -> int:
    return hash((type(self).__name__,) + _values(self))


def _repr(self) -> str:
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
    return f"{type(self).__name__}({inner})"


def _reduce(self):
    return _rebuild, (type(self), {name: getattr(self, name) for name in self._fields})


def _rebuild(cls, values: dict):
    return cls(**values)
