"""rbldnsd's TXT substitution (txtsubst), as a dnsbl TXT template.

rbldnsd substitutes in an entry's TXT text when it answers: `$` is the queried address, `$$` a
dollar sign, `$n` the dataset's variable n (literally `$n` when undefined), and under a base
template (`$=`) the template is the text and `$=` in it the entry's own text. dnsbl keeps `$`
for the queried address and writes everything else out, once, when a file is imported.
"""

from __future__ import annotations

from collections.abc import Mapping

from dnsbl.index.txt_template import literal_txt


def dnsbl_template(text: str, variables: Mapping[str, str]) -> str | None:
    """The dnsbl TXT template for an rbldnsd TXT text (rbldnsd's txtsubst), None for none:
    `variables` are the dataset's `$n` and `$=` definitions."""
    base = variables.get("=")
    if text.startswith("="):
        body = text[1:]
        own = literal_txt(body)
    elif base:
        body = base
        own = literal_txt(text) if text else "$"
    else:
        if not text:
            return None
        body = text
        own = literal_txt(text)
    if "$" not in body:
        return body or None
    out: list[str] = []
    position = 0
    while True:
        dollar = body.find("$", position)
        if dollar < 0:
            out.append(literal_txt(body[position:]))
            break
        out.append(literal_txt(body[position:dollar]))
        following = body[dollar + 1 : dollar + 2]
        position = dollar + 2
        if following == "$":
            out.append("$$")
        elif following and following in "0123456789":
            out.append(literal_txt(variables.get(following, "$" + following)))
        elif following == "=":
            out.append(own)
        else:
            out.append("$")
            position = dollar + 1
    return "".join(out) or None
