"""A trap for tests: settings with trap domains, the running trap, and real SMTP clients.

`send_with_swaks` delivers from a 127.0.0.x source address (swaks `--local-interface`), as a
spammer's host would; `smtp_from` opens an smtplib session bound to one, for the raw commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

from sqlalchemy import Engine

from dnsbl.config import Settings, load_settings
from dnsbl.listings.store import ListingStore
from dnsbl.traps.metrics import TrapStats
from dnsbl.traps.service import run_traps
from tests.conftest import need_program, zone_config
from tests.smtp_fakes import free_port

TRAP_DOMAIN = "trap.example.org"
TRAP_ADDRESS = "spamtrap@real.example.net"
TRUSTED_MX = "127.0.0.50"
SPAM_CODE = "127.0.0.5"


def trap_settings(database_url: str, **traps: Any) -> Settings:
    """One zone (spam-source answers 127.0.0.5), DNS on a free port, a trap on a free port."""
    categories = {"open-relay": "127.0.0.2", "relay-output": "127.0.0.3", "spam-source": SPAM_CODE}
    return load_settings(
        None,
        database_url=database_url,
        zones=[zone_config(categories=categories)],
        dns={"listen": ["127.0.0.1:0"]},
        traps={
            "listen": f"127.0.0.1:{free_port()}",
            "domains": [TRAP_DOMAIN],
            "addresses": [TRAP_ADDRESS],
            "trusted_relays": [f"{TRUSTED_MX}/32"],
            **traps,
        },
    )


@contextlib.asynccontextmanager
async def running_trap(settings: Settings, engine: Engine) -> AsyncIterator[TrapStats]:
    """The trap of `settings`, running in this event loop until the block ends."""
    ListingStore(engine).ensure_zones(settings.zone_names)
    stats = TrapStats()
    started = asyncio.Event()
    task = asyncio.create_task(run_traps(settings, engine, stats=stats, started=started))
    await asyncio.wait_for(started.wait(), 10)
    try:
        yield stats
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def send_with_swaks(
    settings: Settings,
    source: str,
    to: str,
    *,
    subject: str = "Cheap pills",
    message_id: str = "<m1@shop.example>",
    helo: str = "spammer.example",
    sender: str = "seller@shop.example",
    headers: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Deliver one message to the trap from `source` with swaks; its result."""
    host, port = settings.traps.endpoints[0]
    extra = [arg for header in headers for arg in ("--add-header", header)]
    return subprocess.run(
        [
            need_program("swaks"),
            *("--server", host, "--port", str(port), "--local-interface", source),
            *("--helo", helo, "--from", sender, "--to", to),
            *("--header", f"Subject: {subject}", "--header", f"Message-Id: {message_id}"),
            *extra,
            *("--body", f"Dear {to}, buy now!", "--timeout", "30"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def smtp_from(settings: Settings, source: str) -> Iterator[smtplib.SMTP]:
    """An SMTP session with the trap from `source`, greeted."""
    host, port = settings.traps.endpoints[0]
    with smtplib.SMTP(host, port, timeout=30, source_address=(source, 0)) as client:
        client.ehlo("client.example")
        yield client
