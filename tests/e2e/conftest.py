"""The labs that several end-to-end modules share (one per run: they take seconds to start)."""

from tests.mail_lab import mail_lab

__all__ = ["mail_lab"]
