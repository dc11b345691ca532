"""Every outbox event survives the trip through its JSON row."""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from typing import Any

import pytest

from careforall.domain import events
from careforall.domain.events import EVENT_TYPES, Event, load_event


def _sample(tp: Any, field: str) -> Any:
    """A distinctive value of the field's type, so swapped fields would show."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _sample(inner, field)
    if tp is str:
        return f"{field}-välue"  # non-ASCII survives too
    if tp is int:
        return 1000 + len(field)
    if tp is bool:
        return True
    if origin is tuple:
        return (f"{field}-1", f"{field}-2")
    raise AssertionError(f"no sample for {field}: {tp!r}; extend _sample")


def _make(cls: type[Event]) -> Event:
    hints = typing.get_type_hints(cls)
    return cls(
        **{f.name: _sample(hints[f.name], f.name) for f in dataclasses.fields(cls)}
    )


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_event_round_trips_through_json(name: str) -> None:
    cls = EVENT_TYPES[name]
    event = _make(cls)

    payload = event.to_json()
    loaded = load_event(cls.name, payload)

    assert type(loaded) is cls
    assert loaded == event
    assert hash(loaded) == hash(event)  # frozen, hashable after loading
    data = json.loads(payload)
    assert set(data) == {f.name for f in dataclasses.fields(cls)}
    # to_json dumps the instance's own fields: the same as a deep copy would.
    assert data == json.loads(json.dumps(dataclasses.asdict(event)))
    assert "name" not in data


def test_registry_names_match_classes() -> None:
    for name, cls in EVENT_TYPES.items():
        assert cls.name == name


def test_every_event_class_is_registered() -> None:
    defined = {
        obj
        for _, obj in inspect.getmembers(events, inspect.isclass)
        if issubclass(obj, Event) and obj not in (Event, events.PledgeEvent)
    }
    assert defined == set(EVENT_TYPES.values())
    # The shared base of a pledge's events is never written by itself.
    assert "PledgeEvent" not in EVENT_TYPES


def test_events_are_frozen() -> None:
    event = _make(EVENT_TYPES["PledgeCreated"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.pledge_id = "other"  # type: ignore[attr-defined]
