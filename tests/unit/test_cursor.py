"""Message cursors are opaque to clients and refuse anything they did not make."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from repo.errors import InvalidInput
from repo.messages import decode_cursor, encode_cursor


def test_a_cursor_round_trips_to_the_same_position() -> None:
    position = (datetime(2026, 11, 25, 3, 4, 5, 678000, tzinfo=UTC), uuid4())
    assert decode_cursor(encode_cursor(*position)) == position


@pytest.mark.parametrize("cursor", ["", "!!!", "bm9waXBl", "MjAyNi0xMS0yNVQwMzowNDowNXx4eXo="])
def test_anything_else_is_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput, match="invalid cursor"):
        decode_cursor(cursor)
