"""deploy/secondaries/unbound.conf: a resolver with a stub zone for our node, QNAME
minimisation on, answering mail programs in the lab (tests/mail_lab.py)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ZONE
from tests.mail_lab import OPEN_RELAY, RELAY_OUTPUT, TXT, UNLISTED, MailLab, reversed_name

pytestmark = pytest.mark.e2e


def _status(lab: MailLab, name: str, rdtype: str = "A") -> str:
    output = lab.run("dig", "@127.0.0.1", "+tries=1", "+time=3", name, rdtype).stdout
    found = re.search(r"status: (\w+)", output)
    assert found, output
    return found[1]


def test_unbound_resolves_the_zone_through_its_stub(mail_lab: MailLab) -> None:
    assert mail_lab.dig(reversed_name(OPEN_RELAY)) == "127.0.0.2"
    assert mail_lab.dig(reversed_name(RELAY_OUTPUT)) == "127.0.0.3"
    assert mail_lab.dig(reversed_name(OPEN_RELAY), "TXT") == f'"{TXT}{OPEN_RELAY}"'
    assert _status(mail_lab, reversed_name(UNLISTED)) == "NXDOMAIN"
    # What a QNAME-minimising resolver asks on the way down: NOERROR, not NXDOMAIN
    assert _status(mail_lab, f"2.0.192.{ZONE}") == "NOERROR"
    log = (mail_lab.root / "unbound.log").read_text()
    assert "error" not in log.lower(), log
