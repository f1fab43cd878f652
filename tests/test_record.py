"""Frozen records: keyword construction, defaults, value equality, replace."""
from __future__ import annotations

import pickle

import pytest

from aios.record import factory, fields, record, replace


@record
class Point:
    x: int
    y: int = 0
    tags: dict = factory(dict)

    @property
    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


def test_construction_defaults_and_fresh_factories():
    a, b = Point(x=1), Point(x=2, y=3)
    assert (a.x, a.y, b.norm1) == (1, 0, 5)
    assert a.tags == {} and a.tags is not Point(x=1).tags
    assert fields(Point) == ("x", "y", "tags") and fields(a) == fields(Point)


def test_missing_and_unknown_fields_are_refused():
    with pytest.raises(TypeError, match="Point\\(\\) needs the field 'x'"):
        Point()
    with pytest.raises(TypeError, match="Point\\(\\) has no field 'z'"):
        Point(x=1, z=2)


def test_frozen_and_slotted():
    p = Point(x=1)
    with pytest.raises(AttributeError, match="frozen"):
        p.x = 2
    with pytest.raises(AttributeError):
        p.other = 1
    assert not hasattr(p, "__dict__")


def test_value_equality_hash_repr_replace_pickle():
    p = Point(x=1, y=2)
    assert p == Point(x=1, y=2) and p != Point(x=1, y=3) and p != (1, 2)
    assert hash(Point(x=1, y=2, tags=None)) == hash(Point(x=1, y=2, tags=None))
    assert repr(p) == "Point(x=1, y=2, tags={})"
    q = replace(p, y=5)
    assert (q.x, q.y, p.y) == (1, 5, 2)
    with pytest.raises(TypeError):
        replace(p, z=1)
    assert pickle.loads(pickle.dumps(p)) == p
