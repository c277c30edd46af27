"""TXT templates: the text a listing answers, with `$` standing for the queried address."""

from __future__ import annotations


def render_txt(template: str, address: str) -> str:
    """The TXT text for `address`: every `$` in `template` replaced by the address."""
    return template.replace("$", address)
