"""Spam traps and reports: the second way onto the list, beside a relay test.

    trap hit (SMTP sink) ─┐
                          ├─▶ source (Received chain) ─▶ evidence (redacted) ─▶ listing (escalation)
    report (REST API) ────┘

A trap is an address nobody legitimate writes to; mail to it shows its sender is a spam source.
A report is a user's spam, sent in over the API. Either lists the source in the spam-source
category through the one listing rule, keeps the message as evidence with every trap address
taken out, and lists a source that asked out and spams again for twice as long.
"""
