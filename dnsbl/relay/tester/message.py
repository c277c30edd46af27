"""The test message each accepted envelope carries: the token, the envelope, and an explanation.

The token is in a header and in the body, the envelope is echoed in `X-Envelope-Sender` /
`X-Envelope-Recipient` (as ORBS did) so a listed host's operator can see which form got
through, and the body says in plain words what the message is and why it was sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from dnsbl.relay.tester.battery import SENDER, EnvelopeForm

TOKEN_HEADER = "X-Relay-Test-Token"

_EXPLANATION = """\
This is an automated open-relay test, sent by the blocklist that runs the
test domain {domain}.

The mail server at {ip} was nominated for a relay test. We connected to it
and asked it to deliver this message to an address in {domain}, a domain
that server has no business accepting mail for. A correctly configured server
refuses such a request. This message reached our collector, so the server at
{ip} (or a server behind it) relays mail for anyone: it is an open relay, and
spammers use such servers to hide where their mail comes from.

Test:       {test_id}
Form:       {form}
Envelope:   MAIL FROM:{mail_from}
            RCPT TO:{rcpt_to}
Token:      {token}

Nothing else was sent through the server. To fix it, accept mail for other
domains only from your own users (your own networks, or after
authentication), then ask for a retest to leave the list.
"""


def build_message(
    form: EnvelopeForm,
    token: str,
    *,
    target_ip: str,
    test_id: str,
    collector_domain: str,
    helo_name: str,
    now: datetime | None = None,
) -> str:
    """The RFC 5322 message (headers and body, `\\n` line ends) for one envelope form."""
    when = now or datetime.now(UTC)
    headers = [
        f"From: Relay tester <{SENDER}@{collector_domain}>",
        "To: undisclosed-recipients:;",
        f"Subject: Open relay test of {target_ip} ({form.name}) {token}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: <{token}@{helo_name}>",
        f"{TOKEN_HEADER}: {token}",
        f"X-Relay-Test-Form: {form.name}",
        f"X-Relay-Test-Target: {target_ip}",
        f"X-Envelope-Sender: {form.mail_from.strip()}",
        f"X-Envelope-Recipient: {form.rcpt_to.strip()}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
    ]
    body = _EXPLANATION.format(
        domain=collector_domain,
        ip=target_ip,
        test_id=test_id,
        form=form.name,
        mail_from=form.mail_from.strip(),
        rcpt_to=form.rcpt_to.strip(),
        token=token,
    )
    return "\n".join(headers) + "\n\n" + body
