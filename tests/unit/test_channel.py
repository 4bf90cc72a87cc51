"""Event stream channels: what one proxy signs another reads back; anything else is refused."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.domain import channel as channels
from proxy.domain.channel import Channel, InvalidChannel

SECRET = b"s" * 32
NOW = 1_790_000_000.0
ENVIRONMENTS = st.from_regex(r"^[A-Za-z0-9_.-]{1,64}$", fullmatch=True)


def a_channel(environment: str = "production", now: float = NOW) -> Channel:
    return Channel(str(uuid.uuid4()), str(uuid.uuid4()), environment, channels.issued_hour(now))


@given(environment=ENVIRONMENTS, offset=st.floats(0, channels.LIFETIME - 3600))
def test_a_minted_channel_reads_back_within_its_lifetime(environment: str, offset: float) -> None:
    channel = a_channel(environment)
    token = channels.mint(SECRET, channel)
    assert channels.read(SECRET, token, NOW + offset) == channel


def test_the_token_is_url_safe_and_holds_neither_secret_nor_api_token() -> None:
    token = channels.mint(SECRET, a_channel())
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert SECRET.decode() not in token and "kr_live_" not in token


def test_one_key_project_and_environment_get_one_channel_all_hour() -> None:
    hour = channels.issued_hour(NOW)
    first = Channel("k", "p", "production", channels.issued_hour(hour + 1))
    last = Channel("k", "p", "production", channels.issued_hour(hour + 3599))
    assert channels.mint(SECRET, first) == channels.mint(SECRET, last)
    later = Channel("k", "p", "production", channels.issued_hour(hour + 3600))
    assert channels.mint(SECRET, later) != channels.mint(SECRET, first)


def test_a_channel_expires_after_its_lifetime() -> None:
    channel = a_channel()
    token = channels.mint(SECRET, channel)
    assert channels.read(SECRET, token, channel.issued_at + channels.LIFETIME - 1) == channel
    with pytest.raises(InvalidChannel, match="expired"):
        channels.read(SECRET, token, channel.issued_at + channels.LIFETIME)


def test_a_channel_from_the_far_future_is_refused() -> None:
    channel = a_channel(now=NOW + 7200)
    with pytest.raises(InvalidChannel, match="expired"):
        channels.read(SECRET, channels.mint(SECRET, channel), NOW)


def test_another_secret_does_not_verify() -> None:
    token = channels.mint(SECRET, a_channel())
    with pytest.raises(InvalidChannel, match="forged"):
        channels.read(b"t" * 32, token, NOW)


@given(position=st.integers(0, 400), replacement=st.sampled_from("AQgw-_.x="))
def test_any_change_to_a_token_is_refused(position: int, replacement: str) -> None:
    token = channels.mint(SECRET, a_channel())
    position %= len(token)
    if token[position] == replacement:
        return
    forged = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(InvalidChannel):
        channels.read(SECRET, forged, NOW)


@given(text=st.text(max_size=600))
def test_arbitrary_text_is_refused_never_crashes(text: str) -> None:
    with pytest.raises(InvalidChannel):
        channels.read(SECRET, text, NOW)


def test_a_field_with_the_separator_cannot_be_minted() -> None:
    with pytest.raises(ValueError):
        channels.mint(SECRET, Channel("k|1", "p", "production", 0))
