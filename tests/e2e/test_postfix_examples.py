"""deploy/mta/postfix-main.cf and postfix-postscreen.cf in a real Postfix.

A Postfix instance in the mail lab's namespace (tests/mail_lab.py) resolves through Unbound
to our DNS node; swaks connects from the lab's client addresses. `reject_rbl_client` with
the return-code filter and `rbl_reply_maps` rejects a listed client with our TXT, passes an
unlisted one and one listed with a code outside the filter; postscreen adds the weights of
`postscreen_dnsbl_sites` and refuses a client at the threshold before smtpd sees it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ZONE, need_program
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
from tests.postfix_lab import MASTER_CF, main_cf, set_alternate_directories

pytestmark = pytest.mark.e2e

DOMAIN = "mx.lab.example"
_POSTSCREEN_MASTER = """\
smtp      inet  n       -       n       -       1       postscreen
smtpd     pass  -       -       n       -       -       smtpd
dnsblog   unix  -       -       n       -       0       dnsblog
tlsproxy  unix  -       -       n       -       0       tlsproxy
"""


def _main_cf(base: Path, example: str) -> str:
    """An instance on the namespace's 127.0.0.1:25, with the deploy/ excerpt appended."""
    parameters = main_cf(base, "mx", "127.0.0.1", "127.0.0.1/32") | {
        # postscreen only counts lookups answered within this (the default is 6 s); the first
        # one waits for a dnsblog process to start, which took over 1 s on a busy machine
        "postscreen_greet_wait": "3s",
    }
    for relaying in ("transport_maps", "smtp_bind_address"):  # this one only receives
        del parameters[relaying]
    return "".join(f"{key} = {value}\n" for key, value in parameters.items()) + example


@pytest.fixture(scope="module")
def postfix(mail_lab: MailLab) -> Iterator[tuple[Path, Path]]:
    """A running Postfix with both excerpts: (the port-25 config with postscreen in front,
    the log). Postscreen hands clients that pass to an smtpd with reject_rbl_client."""
    need_program("postfix")
    need_program("swaks")
    base = mail_lab.root / "postfix"
    config_dir = base / "etc"
    for sub in ("etc", "log", "queue", "data"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    shutil.chown(base / "data", "postfix", "postfix")
    examples = "".join(
        (DEPLOY / "mta" / name).read_text() for name in ("postfix-main.cf", "postfix-postscreen.cf")
    )
    examples = examples.replace("/etc/postfix/", f"{config_dir}/")
    shutil.copy(DEPLOY / "mta" / "postfix-rbl_reply", config_dir / "rbl_reply")
    (config_dir / "main.cf").write_text(_main_cf(base, examples))
    services = [line for line in MASTER_CF.splitlines() if not line.startswith("smtp ")]
    (config_dir / "master.cf").write_text(_POSTSCREEN_MASTER + "\n".join(services) + "\n")
    set_alternate_directories([config_dir], [])
    try:
        started = mail_lab.run("postfix", "-c", config_dir, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        yield config_dir, base / "log" / "postfix.log"
    finally:
        subprocess.run(["postfix", "-c", str(config_dir), "abort"], capture_output=True)
        set_alternate_directories([], [config_dir])


def _session(lab: MailLab, client: str) -> str:
    """swaks from `client` to postmaster@ the lab's Postfix, up to RCPT; what it printed."""
    result = lab.run(
        "swaks",
        "--server",
        "127.0.0.1:25",
        "--local-interface",
        client,
        "--helo",
        "client.example.net",
        "--from",
        "sender@example.net",
        "--to",
        f"postmaster@{DOMAIN}",
        "--quit-after",
        "RCPT",
        "--timeout",
        "30",
    )
    return result.stdout + result.stderr


def _rcpt_reply(transcript: str) -> str:
    """The server's answer to RCPT TO, as swaks shows it (`<-  250 …` or `<** 554 …`)."""
    lines = transcript.splitlines()
    at = next((i for i, line in enumerate(lines) if "RCPT TO:" in line), None)
    assert at is not None, transcript
    replies = (re.match(r"<(?:-|\*\*|~+)\s+(.*)", line) for line in lines[at + 1 :])
    found = next((reply for reply in replies if reply), None)
    assert found is not None, transcript
    return found[1]


def test_reject_rbl_client_refuses_a_listed_client_with_our_txt(
    mail_lab: MailLab, postfix: tuple[Path, Path]
) -> None:
    # open relay: postscreen's weight 3 stops it first; the relay output too — so smtpd's
    # own check is seen with a client postscreen lets through: the manual listing (weight 1)
    reply = _rcpt_reply(_session(mail_lab, MANUAL))
    assert reply == (
        f"554 5.7.1 Service unavailable; Client host [{MANUAL}] blocked using {ZONE}; {TXT}{MANUAL}"
    ), reply
    assert _rcpt_reply(_session(mail_lab, UNLISTED)).startswith("250 ")
    # listed, but with a code the filter =127.0.0.[2..5] does not take
    assert _rcpt_reply(_session(mail_lab, ODD_CODE)).startswith("250 ")


def test_postscreen_adds_the_weights_and_refuses_at_the_threshold(
    mail_lab: MailLab, postfix: tuple[Path, Path]
) -> None:
    _, log = postfix
    for client in (OPEN_RELAY, RELAY_OUTPUT):  # weight 3: refused by postscreen itself
        reply = _rcpt_reply(_session(mail_lab, client))
        assert reply == (
            f"550 5.7.1 Service unavailable; client [{client}] blocked using {ZONE}"
        ), reply
    # a spam source weighs 2, below the threshold: postscreen lets it through to smtpd,
    # whose reject_rbl_client (127.0.0.[2..5]) then refuses it with our TXT
    reply = _rcpt_reply(_session(mail_lab, SPAM_SOURCE))
    assert reply.startswith(f"554 5.7.1 Service unavailable; Client host [{SPAM_SOURCE}]"), reply
    text = log.read_text()
    for client, code in ((OPEN_RELAY, 2), (RELAY_OUTPUT, 3), (SPAM_SOURCE, 5)):
        listed = rf"addr {re.escape(client)} listed by domain {ZONE} as 127\.0\.0\.{code}\n"
        assert re.search(listed, text), text
    for client in (OPEN_RELAY, RELAY_OUTPUT):
        assert re.search(rf"DNSBL rank 3 for \[{re.escape(client)}\]", text), text
    # postscreen names the rank at the threshold only: below it, the client passes
    assert re.search(rf"PASS NEW \[{re.escape(SPAM_SOURCE)}\]", text), text
    assert not re.search(rf"DNSBL rank \d+ for \[{re.escape(SPAM_SOURCE)}\]", text), text
    assert f"addr {UNLISTED} listed" not in text
