"""A value ending in a newline is not the value without it: names in paths, tokens, label
selectors (Python's ``$`` matches before a trailing newline; the rules anchor with ``\\Z``)."""

from __future__ import annotations

from reconciler.api._tokens import split_token
from reconciler.api.server._resources import parse_path

TOKEN = "abcdefgh." + "x" * 32


def test_a_name_with_a_trailing_newline_is_no_path() -> None:
    assert parse_path("/api/v1/namespaces/default/configmaps/web") is not None
    assert parse_path("/api/v1/namespaces/default/configmaps/web\n") is None
    assert parse_path("/api/v1/namespaces/default\n/configmaps/web") is None


def test_a_token_with_a_trailing_newline_is_no_token() -> None:
    assert split_token(TOKEN) == ("abcdefgh", "x" * 32)
    assert split_token(TOKEN + "\n") is None
