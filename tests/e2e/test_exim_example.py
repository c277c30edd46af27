"""deploy/mta/exim.conf in a real Exim: `dnslists` in the RCPT ACL, `$dnslist_text` shown.

Debian's exim4 cannot be installed beside Postfix (the packages conflict), so `.ci/run`
unpacks its binary (`apt-get download` + `dpkg -x`) into EXIM_ROOT and the test runs
`exim4 -C FILE -bh ADDRESS`: a fake SMTP session from ADDRESS, with the ACLs run for real
and nothing delivered. Exim uses the system resolver: it runs in the mail lab's namespace
(tests/mail_lab.py), whose resolver is Unbound with the stub zone for our node.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ZONE, need
from tests.mail_lab import (
    DEPLOY,
    MANUAL,
    ODD_CODE,
    OPEN_RELAY,
    RELAY_OUTPUT,
    SPAM_SOURCE,
    TXT,
    UNLISTED,
    MailLab,
)

pytestmark = pytest.mark.e2e

EXIM_ROOT = Path(os.environ.get("DNSBL_EXIM_ROOT", "/opt/dnsbl-ci/exim4"))
DOMAIN = "mx.lab.example"
SESSION = (
    "HELO client.example.net\r\n"
    "MAIL FROM:<sender@example.net>\r\n"
    f"RCPT TO:<postmaster@{DOMAIN}>\r\n"
    "QUIT\r\n"
)


@pytest.fixture(scope="module")
def exim(mail_lab: MailLab) -> tuple[Path, Path]:
    """(the exim4 binary, a configuration with deploy/mta/exim.conf as its RCPT ACL)."""
    binary = EXIM_ROOT / "usr" / "sbin" / "exim4"
    need(
        binary.is_file(),
        f"no unpacked exim4 at {binary} (.ci/run: apt-get download exim4-daemon-light "
        f"exim4-base exim4-config, then dpkg -x each into {EXIM_ROOT})",
    )
    base = mail_lab.root / "exim"
    for sub in ("spool", "log"):
        (base / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(base / sub, "Debian-exim")
    acl = (DEPLOY / "mta" / "exim.conf").read_text()
    config = base / "exim.conf"
    config.write_text(
        f"primary_hostname = {DOMAIN}\n"
        f"domainlist local_domains = {DOMAIN}\n"
        "acl_smtp_rcpt = acl_check_rcpt\n"
        f"spool_directory = {base}/spool\n"
        f"log_file_path = {base}/log/%slog\n"
        "host_lookup =\nrfc1413_hosts =\n"
        "begin acl\n"
        "acl_check_rcpt:\n"
        f"{acl}"
        "  accept  domains = +local_domains\n"
        "  deny    message = relay not permitted\n"
    )
    return binary, config


def _rcpt_reply(lab: MailLab, exim: tuple[Path, Path], client: str) -> str:
    binary, config = exim
    result = lab.run(binary, "-C", config, "-bh", client, input=SESSION)
    replies, parts = [], []
    for line in result.stdout.splitlines():
        if line[:3].isdigit() and line[3:4] in ("-", " "):
            parts.append(line[4:])
            if line[3] == " ":  # the last line of a reply (long ones are split)
                replies.append(f"{line[:3]} {' '.join(parts)}")
                parts = []
    # banner, HELO, MAIL, RCPT, QUIT
    assert len(replies) == 5, result.stdout + result.stderr
    return replies[3]


def test_exim_dnslists_refuses_listed_clients_with_dnslist_text(
    mail_lab: MailLab, exim: tuple[Path, Path]
) -> None:
    for client in (OPEN_RELAY, RELAY_OUTPUT, MANUAL, SPAM_SOURCE):
        reply = _rcpt_reply(mail_lab, exim, client)
        assert reply == f"550 {client} is listed at {ZONE}: {TXT}{client}", reply
    assert _rcpt_reply(mail_lab, exim, UNLISTED) == "250 Accepted"
    # listed with a code the example's list does not name
    assert _rcpt_reply(mail_lab, exim, ODD_CODE) == "250 Accepted"
