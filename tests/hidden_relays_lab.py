"""The relays the plain lab does not show: greylisting, TLS-only and IPv6 Postfix instances.

Built from the pieces of tests/postfix_lab.py (same lock, same main.cf, same start and stop):

- `grey` on 127.0.0.12: an open relay behind Debian's postgrey (run here on a free port of
  127.0.0.1, `--delay` of two seconds, its own database, no whitelists, no auto-whitelisting).
  The policy check comes first in `smtpd_relay_restrictions` and postgrey answers `DEFER`, so
  every new triplet gets 450 — closed or not — and a closed relay refuses with 554 only once
  greylisting lets the triplet through. (Debian's default action, DEFER_IF_PERMIT, makes a
  closed relay answer 554 at once: the plain lab's closed host shows that case.)
- `tls` on 127.0.0.13: an open relay with `smtpd_tls_security_level = encrypt` and a
  throwaway self-signed certificate: in clear text every MAIL gets 530.
- `v6` on fd64:6e73:626c:1::10: an open relay listening on IPv6 only, inside a network
  namespace of its own joined to this one by a veth pair. Our end, fd64:6e73:626c:1::1, is
  the tester's IPv6 source and where the collector listens for it. The /48 around them is
  covered by an unreachable route for the lab's lifetime, so nothing meant for the lab can
  leave the machine by its default route, and the namespace has no route but its link.

Open and closed are the instance's mynetworks (`open_relay()`, `close_relay()`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dnsbl.config import TesterSettings
from tests.conftest import need_program
from tests.postfix_lab import (
    COLLECTOR_DOMAIN,
    SMTP_PORT,
    TESTER_ADDRESS,
    PostfixInstance,
    lab_lock,
    started,
    wait_for_port,
    write_instance,
)
from tests.smtp_fakes import free_port, self_signed_certificate

GREY_ADDRESS = "127.0.0.12"
TLS_ADDRESS = "127.0.0.13"
V6_GUARD = "fd64:6e73:626c::/48"  # a ULA prefix of the lab's, never routed anywhere
V6_LINK = "fd64:6e73:626c:1::/64"
V6_TESTER = "fd64:6e73:626c:1::1"  # our end of the veth pair (tester source, collector)
V6_ADDRESS = "fd64:6e73:626c:1::10"  # the relay's, inside the namespace
NETNS = "dnsbl-lab6"
VETH, VETH_PEER = "dnsbl6lab", "dnsbl6relay"
POSTGREY_DELAY = 2  # seconds; the tests retry after a little more


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _remove_link() -> None:
    _ip("link", "del", VETH, check=False)  # takes its peer along
    _ip("netns", "del", NETNS, check=False)
    _ip("-6", "route", "del", "unreachable", V6_GUARD, check=False)


@contextlib.contextmanager
def ipv6_link() -> Iterator[None]:
    """The namespace, the veth pair and their addresses (no DAD: usable at once)."""
    _remove_link()  # a crashed earlier run's
    try:
        _ip("-6", "route", "add", "unreachable", V6_GUARD, "metric", "4000")
        _ip("netns", "add", NETNS)
        _ip("link", "add", VETH, "type", "veth", "peer", "name", VETH_PEER, "netns", NETNS)
        _ip("addr", "add", f"{V6_TESTER}/64", "dev", VETH, "nodad")
        _ip("link", "set", VETH, "up")
        _ip("-n", NETNS, "addr", "add", f"{V6_ADDRESS}/64", "dev", VETH_PEER, "nodad")
        _ip("-n", NETNS, "link", "set", VETH_PEER, "up")
        _ip("-n", NETNS, "link", "set", "lo", "up")
        route = _ip("-6", "route", "get", V6_ADDRESS).stdout
        assert f"dev {VETH}" in route, f"the lab's IPv6 relay is not on its link: {route}"
        yield
    finally:
        _remove_link()


class Postgrey:
    """Debian's postgrey as a policy service on a free port of 127.0.0.1, in `directory`."""

    def __init__(self, directory: Path, delay: int = POSTGREY_DELAY) -> None:
        self.directory = directory
        self.delay = delay
        self.port = free_port()
        self.log_file = directory / "postgrey.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Postgrey:
        program = need_program("postgrey")
        database = self.directory / "db"
        database.mkdir(parents=True)
        shutil.chown(database, "postgrey", "postgrey")  # it drops to its own user
        empty = self.directory / "whitelist"
        empty.write_text("")
        command = [
            program,
            f"--inet=127.0.0.1:{self.port}",
            f"--delay={self.delay}",
            f"--dbdir={database}",
            "--greylist-action=DEFER",
            "--auto-whitelist-clients=0",
            f"--whitelist-clients={empty}",
            f"--whitelist-recipients={empty}",
        ]
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port("127.0.0.1", self.port)
        except OSError:
            self.__exit__()
            raise AssertionError(f"postgrey did not start: {self.log()}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""


@dataclass
class HiddenRelaysLab:
    """The running lab: the three relays, postgrey, and the collector's two ports."""

    grey: PostfixInstance
    tls: PostfixInstance
    v6: PostfixInstance
    postgrey: Postgrey
    collector_port: int  # on 127.0.0.1
    collector_port6: int  # on V6_TESTER

    @property
    def instances(self) -> list[PostfixInstance]:
        return [self.grey, self.tls, self.v6]

    def tester_settings(self, **overrides: object) -> TesterSettings:
        """Tester settings aimed at the lab: both families, a retry after postgrey's delay."""
        values: dict[str, object] = {
            "collector_domain": COLLECTOR_DOMAIN,
            "collector_listen": [
                f"127.0.0.1:{self.collector_port}",
                f"[{V6_TESTER}]:{self.collector_port6}",
            ],
            "port": SMTP_PORT,
            "testable_networks": ["127.0.0.0/8", V6_LINK],
            "source_address": [TESTER_ADDRESS, V6_TESTER],
            "connect_timeout": 5,
            "command_timeout": 10,
            "data_timeout": 10,
            "session_timeout": 60,
            "wait_window": 15,
            "greylist_retry": self.postgrey.delay + 1,
            "greylist_attempts": 2,
        }
        values.update(overrides)
        return TesterSettings.model_validate(values)

    def logs(self) -> str:
        """Every instance's log and postgrey's, for failure messages."""
        parts = [f"--- {i.name}\n{i.queue()}{i.log()}" for i in self.instances]
        return "\n".join([*parts, f"--- postgrey\n{self.postgrey.log()}"])


def _free_port6() -> int:
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind((V6_TESTER, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_hidden_lab() -> Iterator[HiddenRelaysLab]:
    """Start postgrey, the namespace and the three relays; stop all on exit."""
    need_program("openssl")
    with lab_lock() as root, ipv6_link(), Postgrey(root / "postgrey") as postgrey:
        collector_port, collector_port6 = free_port(), _free_port6()
        cert, key = self_signed_certificate(root, "tls.lab.example")
        grey_first = f"check_policy_service inet:127.0.0.1:{postgrey.port}"
        instances = [
            write_instance(
                root,
                "grey",
                GREY_ADDRESS,
                "0.0.0.0/0",
                f"[127.0.0.1]:{collector_port}",
                extra={
                    "smtpd_relay_restrictions": (
                        f"{grey_first}, permit_mynetworks, reject_unauth_destination"
                    ),
                },
            ),
            write_instance(
                root,
                "tls",
                TLS_ADDRESS,
                "0.0.0.0/0",
                f"[127.0.0.1]:{collector_port}",
                extra={
                    "smtpd_tls_security_level": "encrypt",
                    "smtpd_tls_cert_file": str(cert),
                    "smtpd_tls_key_file": str(key),
                    "smtpd_tls_loglevel": "1",
                    "smtpd_tls_received_header": "yes",
                },
            ),
            write_instance(
                root,
                "v6",
                V6_ADDRESS,
                "[::]/0",
                f"[{V6_TESTER}]:{collector_port6}",
                extra={
                    "inet_interfaces": V6_ADDRESS,
                    "inet_protocols": "ipv6",
                    "smtp_bind_address": "",
                    "smtp_bind_address6": V6_ADDRESS,
                },
                open_networks="[::]/0",
                closed_networks=f"[{V6_ADDRESS}]/128",
                netns=NETNS,
            ),
        ]
        with started(instances):
            yield HiddenRelaysLab(*instances, postgrey, collector_port, collector_port6)
