"""deploy/mta/spamassassin.cf and deploy/mta/rspamd-rbl.conf in the real filters.

Both run inside the mail lab's namespace (tests/mail_lab.py), so whatever else they would
look up can only reach Unbound and our node. SpamAssassin (`spamassassin -t`, network tests
on) scores a message whose last external Received hop is listed, one rule per category;
rspamd's RBL module (its monitoring of the zone's 127.0.0.1 / 127.0.0.2 test entries
included) adds the symbol of the listed source's return code, as `rspamc` shows.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from email.parser import Parser
from email.policy import compat32
from pathlib import Path

import pytest

from tests.conftest import need_program, stop_process
from tests.mail_lab import (
    DEPLOY,
    MANUAL,
    ODD_CODE,
    OPEN_RELAY,
    RELAY_OUTPUT,
    SPAM_SOURCE,
    UNLISTED,
    MailLab,
)

pytestmark = pytest.mark.e2e

DNSBL_RULES = {"RCVD_IN_DNSBL_RELAY", "RCVD_IN_DNSBL_OUTPUT", "RCVD_IN_DNSBL_MANUAL"}
DNSBL_RULES |= {"RCVD_IN_DNSBL_SPAM"}


def _message(client: str) -> str:
    """A message as our MX received it from `client` (its one Received header)."""
    return (
        f"Received: from client.example.net (client.example.net [{client}])\n"
        "\tby mx.lab.example (Postfix) with ESMTP id 4Q0A1B2C3D\n"
        "\tfor <postmaster@mx.lab.example>; Tue, 1 Dec 2026 11:00:00 +0000 (UTC)\n"
        "From: sender@example.net\n"
        "To: postmaster@mx.lab.example\n"
        "Subject: hello\n"
        "Date: Tue, 1 Dec 2026 10:59:58 +0000\n"
        f"Message-ID: <{client}.lab@example.net>\n"
        "\n"
        "Hello.\n"
    )


# -- SpamAssassin ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spamassassin(mail_lab: MailLab) -> list[str]:
    """The command line: deploy/mta/spamassassin.cf as the only rules."""
    program = need_program("spamassassin")
    base = mail_lab.root / "spamassassin"
    rules, site = base / "rules", base / "site"
    rules.mkdir(parents=True)
    site.mkdir()
    # Debian's .pre files load the plugins (Check, DNSEval, ...); no other rules
    for pre in Path("/etc/spamassassin").glob("*.pre"):
        shutil.copy(pre, site / pre.name)
    (rules / "10_dnsbl.cf").write_text((DEPLOY / "mta" / "spamassassin.cf").read_text())
    # asks the namespace's resolver (Unbound); no probing whether DNS works
    (site / "local.cf").write_text(
        "dns_available yes\nrequired_score 5\n"
        'add_header all Status "_YESNO_, score=_SCORE_ required=_REQD_ tests=_TESTS_"\n'
    )
    return [
        program,
        "-t",
        f"--configpath={rules}",
        f"--siteconfigpath={site}",
        "-p",
        str(base / "user_prefs"),
    ]


def _spamassassin_tests(lab: MailLab, command: list[str], client: str) -> tuple[set[str], str]:
    """The rules that hit on a message from `client`, and its X-Spam-Status."""
    result = lab.run(*command, input=_message(client))
    assert result.returncode in (0, 1), result.stderr  # -t: 1 means spam
    checked = Parser(policy=compat32).parsestr(result.stdout, headersonly=True)
    status = re.sub(r"\s+", " ", str(checked["X-Spam-Status"]))
    found = re.search(r"tests=(\S*)", status)
    assert found, result.stdout + result.stderr
    return set(found[1].split(",")) - {"none", ""}, status


def test_spamassassin_scores_each_category_of_the_last_external_hop(
    mail_lab: MailLab, spamassassin: list[str]
) -> None:
    expected = {
        OPEN_RELAY: ("RCVD_IN_DNSBL_RELAY", 3.0),
        RELAY_OUTPUT: ("RCVD_IN_DNSBL_OUTPUT", 2.0),
        MANUAL: ("RCVD_IN_DNSBL_MANUAL", 1.0),
        SPAM_SOURCE: ("RCVD_IN_DNSBL_SPAM", 2.5),
    }
    for client, (rule, score) in expected.items():
        hits, status = _spamassassin_tests(mail_lab, spamassassin, client)
        assert hits & DNSBL_RULES == {rule}, status
        assert f"score={score}" in status, status
    for client in (UNLISTED, ODD_CODE):  # not listed; listed with a code no rule names
        hits, status = _spamassassin_tests(mail_lab, spamassassin, client)
        assert not hits & DNSBL_RULES, status


# -- rspamd ------------------------------------------------------------------------------------

RSPAMD_SYMBOLS = {
    OPEN_RELAY: ("DNSBL_EXAMPLE_OPEN_RELAY", 4.0),
    RELAY_OUTPUT: ("DNSBL_EXAMPLE_RELAY_OUTPUT", 3.0),
    MANUAL: ("DNSBL_EXAMPLE_MANUAL", 2.0),
    SPAM_SOURCE: ("DNSBL_EXAMPLE_SPAM_SOURCE", 3.5),
    ODD_CODE: ("DNSBL_EXAMPLE", 0.0),  # listed, with a code no returncode names
}


@pytest.fixture(scope="module")
def rspamd(mail_lab: MailLab) -> Iterator[Path]:
    """Debian's rspamd configuration with deploy/mta/rspamd-rbl*.conf in its local.d; the
    log of its `monitored` checks and RBL lookups."""
    program = need_program("rspamd")
    need_program("rspamc")
    base = mail_lab.root / "rspamd"
    local = base / "local" / "local.d"
    local.mkdir(parents=True)
    for sub in ("db", "run", "log"):
        (base / sub).mkdir()
    shutil.copy(DEPLOY / "mta" / "rspamd-rbl.conf", local / "rbl.conf")
    shutil.copy(DEPLOY / "mta" / "rspamd-rbl_group.conf", local / "rbl_group.conf")
    # rspamd's own resolver setting: straight to our node (deploy/example.toml's address)
    (local / "options.inc").write_text(
        'dns { nameserver = ["127.0.0.1:5353"]; }\n'
        "disable_hyperscan = true;\n"  # no regexp databases to compile for a test
    )
    (local / "logging.inc").write_text('level = "info";\ndebug_modules = ["monitored"];\n')
    process = mail_lab.popen(
        program,
        "-f",
        "-i",  # workers as root: the lab has no rspamd user's directories
        "-u",
        "root",
        "-g",
        "root",
        "-c",
        "/etc/rspamd/rspamd.conf",
        "--var",
        f"LOCAL_CONFDIR={base / 'local'}",
        "--var",
        f"DBDIR={base / 'db'}",
        "--var",
        f"RUNDIR={base / 'run'}",
        "--var",
        f"LOGDIR={base / 'log'}",
        log=base / "rspamd.out",
    )
    log = base / "log" / "rspamd.log"
    try:
        deadline = time.monotonic() + 180  # loading its rules takes seconds
        while mail_lab.run("rspamc", "-h", "127.0.0.1:11334", "stat").returncode != 0:
            assert process.poll() is None, (base / "rspamd.out").read_text()
            if time.monotonic() > deadline:
                pytest.fail(f"rspamd did not start; log:\n{log.read_text()}")
            time.sleep(0.5)
        yield log
    finally:
        stop_process(process)


def _rspamd_symbols(lab: MailLab, client: str) -> dict[str, float]:
    """The symbols rspamd finds in a message from `client`, with their scores."""
    result = lab.run(
        "rspamc", "-h", "127.0.0.1:11333", "-i", client, "symbols", input=_message(client)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {
        found[1]: float(found[2])
        for found in re.finditer(r"^Symbol: (\w+) \(([-\d.]+)\)", result.stdout, re.MULTILINE)
    }


def test_rspamd_rbl_returncodes_give_each_category_its_symbol(
    mail_lab: MailLab, rspamd: Path
) -> None:
    ours = {symbol for symbol, _ in RSPAMD_SYMBOLS.values()}
    for client, (symbol, score) in RSPAMD_SYMBOLS.items():
        symbols = _rspamd_symbols(mail_lab, client)
        assert {s: v for s, v in symbols.items() if s in ours} == {symbol: score}, symbols
    assert not ours & _rspamd_symbols(mail_lab, UNLISTED).keys()
    log = rspamd.read_text()
    assert "added rbl rule DNSBL_EXAMPLE" in log, log
    assert "started monitored object bl.example.org" in log, log
    # rspamd asked the zone's RFC 5782 test entry and found it as it must be (NXDOMAIN);
    # a zone answering it otherwise would have been disabled
    assert not re.search(r"bl\.example\.org.*(?:disabled|unexpected)", log, re.IGNORECASE), log
