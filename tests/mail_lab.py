"""A lab for the deploy/ examples: a network namespace where the mail programs resolve through
Unbound, which asks our DNS node for the zone — the chain a mail operator runs.

Inside a namespace of its own (`ip netns add`; only a loopback interface, so nothing can
leave the machine): `dnsbl dns` serving `deploy/example.toml` exactly as written (on
127.0.0.1:5353), and Unbound configured with `deploy/secondaries/unbound.conf` (its stub-zone
points there) on 127.0.0.1:53. `/etc/netns/NAME/resolv.conf` names Unbound, so a program
run with `ip netns exec` that uses the system resolver (Postfix, Exim) asks it. The clients
that the MTAs judge connect from TEST-NET addresses put on the namespace's loopback.

The addresses are listed before anything asks for them: Unbound keeps a negative answer
for the zone's negative TTL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ZONE, need, need_program, stop_process

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
EXAMPLE_CONFIG = DEPLOY / "example.toml"
TXT = "Listed: see http://127.0.0.1:8000/lookup/"  # deploy/example.toml's template, before $

# The clients of the lab, by what the zone says of them (deploy/example.toml's categories).
OPEN_RELAY = "192.0.2.20"  # open-relay, 127.0.0.2
RELAY_OUTPUT = "192.0.2.21"  # relay-output, 127.0.0.3
MANUAL = "192.0.2.22"  # manual, 127.0.0.4
SPAM_SOURCE = "192.0.2.23"  # spam-source, 127.0.0.5
ODD_CODE = "192.0.2.24"  # manual with code 127.0.0.10: outside the MTAs' filters
UNLISTED = "192.0.2.99"
LISTED = {
    OPEN_RELAY: ["--category", "open-relay"],
    RELAY_OUTPUT: ["--category", "relay-output"],
    MANUAL: ["--category", "manual"],
    SPAM_SOURCE: ["--category", "spam-source"],
    ODD_CODE: ["--category", "manual", "--code", "127.0.0.10"],
}
CLIENTS = [*LISTED, UNLISTED]


def reversed_name(address: str) -> str:
    return ".".join(reversed(address.split("."))) + "." + ZONE


@dataclass
class MailLab:
    """The running lab: its namespace, a directory for the programs' files, the dnsbl config."""

    netns: str
    root: Path
    env: dict[str, str]

    def command(self, *args: str | Path) -> list[str]:
        """`args` run inside the namespace."""
        return ["ip", "netns", "exec", self.netns, *(str(arg) for arg in args)]

    def run(
        self, *args: str | Path, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `args` inside the namespace; its output, whatever its exit status."""
        return subprocess.run(
            self.command(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env,
        )

    def popen(self, *args: str | Path, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                self.command(*args), stdout=out, stderr=subprocess.STDOUT, env=self.env
            )

    def dnsbl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The `dnsbl` command on the lab's configuration and database."""
        result = subprocess.run(
            [sys.executable, "-m", "dnsbl", "--config", str(EXAMPLE_CONFIG), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=self.env,
            cwd=self.root,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def dig(self, name: str, rdtype: str = "A", server: str = "127.0.0.1", port: int = 53) -> str:
        """`dig +short` for `name` inside the namespace (Unbound by default)."""
        result = self.run(
            "dig", f"@{server}", "-p", str(port), "+tries=1", "+time=2", "+short", name, rdtype
        )
        return result.stdout.strip()


def _remove_stale_namespaces() -> None:
    """Namespaces a crashed run left behind (their creator's pid is gone)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if name.startswith("dnsbl-lab-") and len(parts) == 4 and parts[2].isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(parts[2]), 0)
                continue
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)


def _unbound_config(root: Path) -> Path:
    """deploy/secondaries/unbound.conf as written, with where this Unbound keeps its files."""
    path = root / "unbound.conf"
    path.write_text(
        (DEPLOY / "secondaries" / "unbound.conf").read_text() + "server:\n"
        "    interface: 127.0.0.1\n    port: 53\n"
        '    chroot: ""\n    username: ""\n'
        f'    directory: "{root}"\n    pidfile: "{root}/unbound.pid"\n'
        f'    logfile: "{root}/unbound.log"\n    use-syslog: no\n    verbosity: 1\n'
        '    module-config: "iterator"\n'  # no DNSSEC validation: the lab has no trust anchor
        "remote-control:\n    control-enable: no\n"
    )
    return path


def _wait(check: object, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what}; log:\n{log.read_text() if log.exists() else ''}")
        time.sleep(0.1)


@contextlib.contextmanager
def running_mail_lab(root: Path) -> Iterator[MailLab]:
    """Start the lab under `root`; tear it down (processes, namespace) on exit."""
    need(os.geteuid() == 0, "the mail lab needs root (ip netns)")
    for program in ("ip", "unbound", "dig"):
        need_program(program)
    _remove_stale_namespaces()
    netns = f"dnsbl-lab-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    env = {
        # DNSBL_DNS__ENGINE passes: the lab's node answers with the engine a run asks for.
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith("DNSBL_") or k == "DNSBL_DNS__ENGINE"
        },
        "DNSBL_DATABASE_URL": f"sqlite:///{root / 'dnsbl.sqlite3'}",
    }
    lab = MailLab(netns, root, env)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        etc = Path("/etc/netns") / netns
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        assert lab.run("ip", "link", "set", "lo", "up").returncode == 0
        for address in CLIENTS:
            assert lab.run("ip", "addr", "add", f"{address}/32", "dev", "lo").returncode == 0
        lab.dnsbl("db", "upgrade")
        for address, how in LISTED.items():
            lab.dnsbl("list", ZONE, address, *how, "--reason", "mail lab")
        dns_log = root / "dns.log"
        node = lab.popen(
            sys.executable, "-m", "dnsbl", "--config", EXAMPLE_CONFIG, "dns", log=dns_log
        )
        processes.append(node)
        # Every listing answered by the node itself before Unbound hears of any of them.
        for address in LISTED:
            name = reversed_name(address)
            _wait(
                lambda name=name: lab.dig(name, port=5353) != "",
                f"dnsbl dns does not answer {name}",
                dns_log,
            )
        unbound_log = root / "unbound.log"
        unbound = lab.popen("unbound", "-d", "-c", _unbound_config(root), log=root / "unbound.out")
        processes.append(unbound)
        _wait(
            lambda: lab.dig(reversed_name("127.0.0.2")) == "127.0.0.2",
            "Unbound does not answer the zone's test entry",
            unbound_log,
        )
        yield lab
    finally:
        for process in reversed(processes):
            stop_process(process, timeout=15)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        shutil.rmtree(Path("/etc/netns") / netns, ignore_errors=True)


@pytest.fixture(scope="session")
def mail_lab() -> Iterator[MailLab]:
    """The running lab, one for the whole run (tests/e2e/conftest.py makes it visible).

    Its files are not under pytest's temporary root: Postfix's and Exim's daemons run as
    their own users and must reach them, and every pytest that starts (anyone's) makes that
    root private again (mode 700).
    """
    root = Path(tempfile.mkdtemp(prefix="dnsbl-mail-lab-"))
    root.chmod(0o755)
    try:
        with running_mail_lab(root) as lab:
            yield lab
    finally:
        shutil.rmtree(root, ignore_errors=True)
