"""What is kept of a spam message: its identifying headers, all its headers and the start of
its text, redacted.

Headers are kept decoded (RFC 2047 encoded words read as text) and the body as the text of
its text parts (base64 and quoted-printable decoded), so that redaction sees what a reader
would: a trap address cannot hide in an encoding. Other parts are named, not kept.
"""

from __future__ import annotations

import email.policy
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

from dnsbl.config import TrapsSettings
from dnsbl.traps.redaction import Redactor

BODY_LIMIT = 16 * 1024  # characters of body text kept per message


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """A message as evidence: redacted, cut to size."""

    subject: str | None
    message_id: str | None
    sender_domain: str | None  # of the From header, else of the envelope sender
    headers: str
    body: str
    received: list[str]  # the Received headers as written, newest first (to find the source)


def parse_message(raw: bytes) -> Message:
    """The message, leniently: what cannot be parsed stays as text (never an exception)."""
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def _header(message: Message, name: str) -> str | None:
    try:
        value = message.get(name)
    except Exception:  # a header the policy cannot read at all
        return None
    return None if value is None else " ".join(str(value).split())


def _domain_of(address: str | None) -> str | None:
    if not address:
        return None
    domain = parseaddr(address)[1].rpartition("@")[2].strip().rstrip(".").lower()
    return domain or None


def _header_lines(message: Message) -> list[str]:
    lines = []
    for name, value in message.raw_items():
        try:
            shown = str(email.policy.default.header_factory(name, value))
        except Exception:
            shown = str(value)
        lines.append(f"{name}: {' '.join(shown.split())}")
    return lines


def _body_text(message: Message) -> str:
    pieces: list[str] = []
    size = 0
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() != "text":
            name = part.get_filename() or "unnamed"
            pieces.append(f"[{part.get_content_type()} part {name!r} not kept]\n")
            continue
        try:
            text = part.get_content() if isinstance(part, EmailMessage) else str(part.get_payload())
        except Exception:  # an unknown charset or a broken encoding: the payload as sent
            text = str(part.get_payload())
        pieces.append(text)
        size += len(text)
        if size >= BODY_LIMIT:
            break
    return "".join(pieces)[:BODY_LIMIT]


def recipients_of(message: Message) -> list[str]:
    """The addresses in To and Cc (a reporter's users: redacted as the traps are)."""
    values = [str(v) for name in ("To", "Cc") for v in message.get_all(name, []) or []]
    return [address for _, address in getaddresses(values) if "@" in address]


def message_facts(
    raw: bytes, traps: TrapsSettings, extra: Iterable[str] = (), mail_from: str | None = None
) -> MessageFacts:
    """The evidence of `raw` with every trap, every `extra` address and every address it was
    written to (To, Cc) taken out."""
    message = parse_message(raw)
    redact = Redactor(traps, [*extra, *recipients_of(message)])
    sender = _header(message, "From")
    return MessageFacts(
        subject=redact(_header(message, "Subject")),
        message_id=redact(_header(message, "Message-ID")),
        sender_domain=redact(_domain_of(sender) or _domain_of(mail_from)),
        headers=redact.text("\n".join(_header_lines(message))),
        body=redact.text(_body_text(message)),
        received=[str(value) for value in message.get_all("Received", []) or []],
    )
