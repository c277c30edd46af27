"""TXT templates: the text a listing answers, with `$` standing for the queried address.

The syntax is rbldnsd's, as its `txtsubst` applies it when it answers: `$` is replaced by the
queried address and `$$` stands for one literal dollar sign (scanned left to right, so `$$$`
is a dollar sign followed by the address). rbldnsd's `$n` variables and `$=` base template are
resolved when a data file is imported (`dnsbl.rbldnsd.data`); what is stored is this syntax.
"""

from __future__ import annotations

# The longest TXT template a zone serves, in UTF-8 bytes: one character-string of a TXT record
# (RFC 1035 §3.3.14), what rbldnsd and its mirrors serve and what every resolver shows whole.
# A longer one is refused where it is written (never cut when it is answered).
MAX_TXT_BYTES = 255


def txt_too_long(template: str) -> str | None:
    """Why `template` cannot be served (too long, the limit named), or None."""
    size = len(template.encode())
    if size <= MAX_TXT_BYTES:
        return None
    return f"the TXT is {size:,} bytes; a zone serves at most {MAX_TXT_BYTES}"


def render_txt(template: str, address: str) -> str:
    """The TXT text for `address`: each `$` replaced by the address, each `$$` by `$`."""
    if "$" not in template:
        return template
    return "$".join(part.replace("$", address) for part in template.split("$$"))


def literal_txt(text: str) -> str:
    """A template that renders as `text` whatever the address (its dollar signs doubled)."""
    return text.replace("$", "$$")
