"""Test tokens: the unguessable marks that tie a message arriving at the collector to its test.

A token is `<test key>z<form number><random hex>`, only `[a-z0-9]`, so that it survives every
rewriting a relay applies to an address (`%`, `!`, quoting, source routes). It travels in the
recipient's local part as `rt-<token>` and in the `X-Relay-Test-Token` header. The test key is
the test id reduced to `[a-z0-9]`: an arrival can be routed to its test before the probe ends.
The random part stops anyone from forging an arrival for a test they did not run.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

LOCAL_PREFIX = "rt-"
_SEPARATOR = "z"
_RANDOM_BYTES = 5
_KEY_LENGTH = 32
_IN_LOCAL_PART = re.compile(r"(?<![a-z0-9])rt-([a-z0-9]+z[0-9]{2}[0-9a-f]{10})(?![a-z0-9])")


def test_key(test_id: str) -> str:
    """The part of a token that names its test: `test_id` lower-cased, reduced to `[a-z0-9]`."""
    key = re.sub(r"[^a-z0-9]", "", test_id.lower())[:_KEY_LENGTH]
    return key or "t"


def token_factory(test_id: str) -> Callable[[str], str]:
    """A `token_for(form_name)` giving each form of one test its own token (stable per name)."""
    key = test_key(test_id)
    issued: dict[str, str] = {}

    def token_for(form_name: str) -> str:
        if form_name not in issued:
            number = len(issued) % 100
            random_part = secrets.token_hex(_RANDOM_BYTES)
            issued[form_name] = f"{key}{_SEPARATOR}{number:02d}{random_part}"
        return issued[form_name]

    return token_for


def key_of(token: str) -> str:
    """The test key a token carries (what `test_key` made of the test id)."""
    return token.rpartition(_SEPARATOR)[0]


def local_part(token: str) -> str:
    """The recipient local part that carries `token`."""
    return f"{LOCAL_PREFIX}{token}"


def find_token(text: str) -> str | None:
    """The first token written as `rt-<token>` in `text` (an address or a header), if any."""
    match = _IN_LOCAL_PART.search(text.lower())
    return match.group(1) if match else None
