"""The package exports what it documents."""

from __future__ import annotations

import platform_events


def test_all_names_exist_and_are_unique() -> None:
    names = platform_events.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(platform_events, name), name


def test_decode_error_is_a_value_error() -> None:
    assert issubclass(platform_events.EventDecodeError, ValueError)
    assert issubclass(platform_events.UnknownTopicError, KeyError)
