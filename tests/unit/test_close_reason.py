"""A websocket close reason always fits a close frame."""

from __future__ import annotations

import pytest

from bulkops.graphql.ws_protocols import MAX_CLOSE_REASON_BYTES, fit_close_reason


@pytest.mark.parametrize(
    "reason",
    ["", "Forbidden", "x" * MAX_CLOSE_REASON_BYTES, "é" * 61 + "x"],
)
def test_a_reason_that_fits_is_kept(reason: str) -> None:
    assert fit_close_reason(reason) == reason


@pytest.mark.parametrize(
    "reason",
    ["x" * (MAX_CLOSE_REASON_BYTES + 1), "é" * 62, "x" + "€" * 100, "🦀" * 40, "y" * 100_000],
)
def test_a_longer_reason_is_cut_on_a_character_boundary(reason: str) -> None:
    cut = fit_close_reason(reason)
    encoded = cut.encode("utf-8")
    assert len(encoded) <= MAX_CLOSE_REASON_BYTES
    assert len(encoded) > MAX_CLOSE_REASON_BYTES - 7  # at most one character and the mark lost
    assert cut.endswith("…")
    assert reason.startswith(cut[:-1])


def test_characters_utf8_cannot_carry_are_replaced() -> None:
    assert fit_close_reason("id \ud800 taken") == "id ? taken"
