"""The relay battery: the envelope forms a tester tries on a host, one token per form.

The forms are those of nmap's `smtp-open-relay` (16), the additions of ORBS and its successors
(unbracketed recipient, sender without a domain, `%` / `@…@` / `!` against the bare address,
senders claiming to be the host's own users) and the families RFC 2505 §2.1 names (source
routes, the `%` hack, UUCP `!` paths). See RELAY-TESTS.md. `C` is the collector domain, `t` the
token-carrying local part, `S` the host name from the host's banner, `IP` its address.

Every form is the exact text written after `MAIL FROM:` and `RCPT TO:`; nothing parses or
rewrites it, because the point is to send what a relay's address parser must see through.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from dnsbl.relay.tester.tokens import local_part

SENDER = "relaytest"
"""The local part of the test senders (never carries a token: bounces to it prove nothing)."""


@dataclass(frozen=True)
class EnvelopeForm:
    """One relay attempt: a name, and the exact text after `MAIL FROM:` and `RCPT TO:`.

    `direct`: the recipient's domain is the collector's, plainly. A closed server refuses such
    a recipient outright (it is not one of its own domains), so a temporary answer to it —
    greylisting — is no refusal. A recipient that looks local to the host (`t%C@[IP]`,
    `"t@C"`, `C!t`) may meet a closed server's local checks, greylisting among them.
    """

    name: str
    mail_from: str
    rcpt_to: str
    direct: bool = False


def _literal(ip: str) -> str:
    """The address literal of `ip` (RFC 5321 §4.1.3): `[192.0.2.1]` or `[IPv6:2001:db8::1]`."""
    if ipaddress.ip_address(ip).version == 6:
        return f"[IPv6:{ip}]"
    return f"[{ip}]"


_T = "\x00"
"""Stands for the token local part in the templates; no address text can contain it."""


def _forms(c: str, ip: str, s: str | None) -> list[tuple[str, str, str]]:
    """(name, MAIL FROM text, RCPT TO template) where `_T` marks the token's local part."""
    t = _T
    lit = _literal(ip)
    f_lit = f"<{SENDER}@{lit}>"
    forms = [
        # nmap smtp-open-relay, in its order (the S forms are added below when S is known)
        ("null-sender", "<>", f"<{t}@{c}>"),
        ("sender-collector", f"<{SENDER}@{c}>", f"<{t}@{c}>"),
        ("sender-ip-literal", f_lit, f"<{t}@{c}>"),
        ("percent-ip-literal", f_lit, f"<{t}%{c}@{lit}>"),
        ("quoted-at", f_lit, f'<"{t}@{c}">'),
        ("quoted-percent", f_lit, f'<"{t}%{c}">'),
        ("double-at-ip-literal", f_lit, f"<{t}@{c}@{lit}>"),
        ("quoted-at-ip-literal", f_lit, f'<"{t}@{c}"@{lit}>'),
        ("source-route-ip-literal", f_lit, f"<@{lit}:{t}@{c}>"),
        ("bang", f_lit, f"<{c}!{t}>"),
        ("bang-ip-literal", f_lit, f"<{c}!{t}@{lit}>"),
        # ORBS and successors
        ("unbracketed-recipient", f_lit, f" {t}@{c}"),
        ("sender-without-domain", f"<{SENDER}>", f"<{t}@{c}>"),
        ("percent-bare-ip", f_lit, f"<{t}%{c}@{ip}>"),
        ("double-at-bare-ip", f_lit, f"<{t}@{c}@{ip}>"),
        ("bang-bare-ip", f_lit, f"<{c}!{t}@{ip}>"),
        ("percent-local", f_lit, f"<{t}%{c}>"),
        ("quoted-percent-ip-literal", f_lit, f'<"{t}%{c}"@{lit}>'),
        ("sender-postmaster-ip-literal", f"<postmaster@{lit}>", f"<{t}@{c}>"),
        # RFC 2505 §2.1: a source route through several hops
        ("source-route-chain", f_lit, f"<@{lit},@{c}:{t}@{c}>"),
    ]
    if s is not None:
        forms += [
            ("sender-banner", f"<{SENDER}@{s}>", f"<{t}@{c}>"),
            ("percent-banner", f_lit, f"<{t}%{c}@{s}>"),
            ("double-at-banner", f_lit, f"<{t}@{c}@{s}>"),
            ("source-route-banner", f_lit, f"<@{s}:{t}@{c}>"),
            ("bang-banner", f_lit, f"<{c}!{t}@{s}>"),
            ("sender-postmaster-banner", f"<postmaster@{s}>", f"<{t}@{c}>"),
        ]
    return forms


def is_direct(rcpt_to: str, collector_domain: str) -> bool:
    """Whether a form's recipient is plainly in the collector's domain (`EnvelopeForm.direct`)."""
    return rcpt_to.strip().strip("<>").rpartition("@")[2] == collector_domain


def battery(
    token_for: Callable[[str], str],
    collector_domain: str,
    target_ip: str,
    banner_name: str | None,
) -> list[EnvelopeForm]:
    """The envelope forms to try on `target_ip`, each carrying `token_for(form name)`.

    Forms that need the banner's host name are left out when `banner_name` is None.
    """
    return [
        EnvelopeForm(
            name,
            mail_from,
            template.replace(_T, local_part(token_for(name))),
            direct=is_direct(template, collector_domain),
        )
        for name, mail_from, template in _forms(collector_domain, target_ip, banner_name)
    ]
