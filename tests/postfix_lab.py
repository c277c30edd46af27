"""A lab of real Postfix relays on loopback aliases, for the tester's end-to-end tests.

Two Postfix instances (Debian's `postfix` package), each with its own configuration, queue
and log under a temporary directory, each routing the collector domain to the collector with
`transport_maps` and sending from its own address (`smtp_bind_address`):

- `open`   on 127.0.0.10: an open relay (`mynetworks = 0.0.0.0/0`; Postfix refuses
  `smtpd_relay_restrictions = permit` alone, so openness comes from mynetworks);
- `closed` on 127.0.0.11: relays only for itself (`mynetworks = 127.0.0.11/32`), so the
  tester, which connects from 127.0.0.1 (`source_address`; left to itself the kernel would
  pick 127.0.0.11), is refused.

Postfix binds only addresses that exist on an interface, so the lab adds them to `lo`
(root needed). Instances are started with `postfix -c DIR start`; Postfix accepts such a
directory only when the default instance's `alternate_config_directories` lists it, so the
lab writes the default `/etc/postfix/main.cf` if it is missing and adds its directory there.
Runs are serialised by a lock file: the addresses and port 25 are shared by every run.
The pieces here (an instance's main.cf as parameters, `write_instance`, `start_instances`, the
lock) also build the lab of greylisting, TLS-only and IPv6 relays (tests/hidden_relays_lab.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dnsbl.config import TesterSettings
from dnsbl.relay.collector import Arrival, Collector
from tests.conftest import need, need_program
from tests.smtp_fakes import free_port

OPEN_ADDRESS = "127.0.0.10"
CLOSED_ADDRESS = "127.0.0.11"
COLLECTOR_DOMAIN = "relaytest.example"
SMTP_PORT = 25
TESTER_ADDRESS = "127.0.0.1"
DEFAULT_CONFIG = Path("/etc/postfix")
_LOCK = Path("/tmp/dnsbl-postfix-lab.lock")
_EDIT_LOCK = Path("/tmp/dnsbl-postfix-alternates.lock")  # held while main.cf is edited
_STARTED = Path("/tmp/dnsbl-postfix-lab.running")  # config dirs of a run that may have crashed

# Services of a minimal master.cf; chroot off (column 5 "n"), since the queue lives in a tmp dir
MASTER_CF = """\
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       1       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""


@dataclass
class PostfixInstance:
    """One running Postfix of the lab: its address, configuration directory and log.

    `open_networks` and `closed_networks` are its mynetworks as an open and as a closed
    relay; `netns` the network namespace it runs in (None: the machine's own).
    """

    name: str
    address: str
    config_dir: Path
    log_file: Path
    open_networks: str = "0.0.0.0/0"
    closed_networks: str = ""
    netns: str | None = None

    def __post_init__(self) -> None:
        self.closed_networks = self.closed_networks or f"{self.address}/32"

    def _command(self, *args: str) -> list[str]:
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*inside, "postfix", "-c", str(self.config_dir), *args]

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._command(*args),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def set(self, **parameters: str) -> None:
        """Change main.cf parameters (not yet in effect: `reload`)."""
        pairs = [f"{key}={value}" for key, value in parameters.items()]
        subprocess.run(["postconf", "-c", str(self.config_dir), "-e", *pairs], check=True)

    def reload(self) -> None:
        """Make the running instance read its main.cf again, and wait until it answers so."""
        old = self._smtpd_pids()
        result = self._postfix("reload")
        assert result.returncode == 0, result.stderr
        # `postfix reload` only signals the master: an smtpd started before it (idle, or
        # finishing a session) still answers by the old configuration until it exits.
        deadline = time.monotonic() + 60
        while self._smtpd_pids() & old:
            assert time.monotonic() < deadline, f"{self.name}: an old smtpd outlived the reload"
            time.sleep(0.05)

    def _smtpd_pids(self) -> set[int]:
        """The smtpd processes of this instance: the children of its master named smtpd."""
        pid_file = self.config_dir.parent / "queue" / "pid" / "master.pid"
        master = int(pid_file.read_text().split()[0])
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    # the command may hold spaces and parentheses: the fields follow the last ")"
                    head, _, tail = (entry / "stat").read_text().rpartition(")")
                    if int(tail.split()[1]) == master and head.endswith("(smtpd"):
                        found.add(int(entry.name))
        return found

    def close_relay(self) -> None:
        """Make this instance a closed relay (only itself in mynetworks) and reload it."""
        self.set(mynetworks=self.closed_networks)
        self.reload()

    def open_relay(self) -> None:
        """Make this instance an open relay (every address in mynetworks) and reload it."""
        self.set(mynetworks=self.open_networks)
        self.reload()

    def flush(self) -> None:
        """Ask the queue manager to try every deferred message now."""
        subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-f"], capture_output=True, check=False
        )

    def queue(self) -> str:
        """The queue listing (`postqueue -p`), for failure messages."""
        result = subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-p"],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout + result.stderr

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def start(self) -> subprocess.Popen[str]:
        """Begin starting this instance (`postfix start` takes seconds: run them side by side)."""
        return subprocess.Popen(
            self._command("start"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> None:
        """Stop the instance at once and wait until its address no longer answers."""
        if self._postfix("status").returncode == 0:
            self._postfix("abort")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.address, SMTP_PORT), timeout=1).close()
            except OSError:
                return
            time.sleep(0.1)


@dataclass
class PostfixLab:
    """The running lab: an open and a closed relay, both routing the collector domain."""

    open: PostfixInstance
    closed: PostfixInstance
    collector_port: int

    def tester_settings(self, **overrides: object) -> TesterSettings:
        """Tester settings aimed at the lab (port 25, loopback testable, quick timeouts)."""
        values: dict[str, object] = {
            "collector_domain": COLLECTOR_DOMAIN,
            "collector_listen": f"127.0.0.1:{self.collector_port}",
            "port": SMTP_PORT,
            "testable_networks": ["127.0.0.0/8"],
            # Without it the kernel sends from the alias itself (127.0.0.11 to 127.0.0.11),
            # which is in the closed relay's mynetworks.
            "source_address": TESTER_ADDRESS,
            "connect_timeout": 5,
            "command_timeout": 10,
            "data_timeout": 10,
            "session_timeout": 60,
            "wait_window": 3,
        }
        values.update(overrides)
        return TesterSettings.model_validate(values)


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _ensure_loopback_alias(address: str) -> None:
    shown = subprocess.run(
        ["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    ).stdout
    if f"inet {address}/" not in shown:
        subprocess.run(
            ["ip", "addr", "add", f"{address}/32", "dev", "lo"], capture_output=True, check=True
        )


def set_alternate_directories(add: list[Path], remove: list[Path]) -> None:
    """Edit the default instance's alternate_config_directories (dropping vanished ones).

    Every lab of Postfix instances edits it (tests/e2e/test_postfix_examples.py too): one at
    a time."""
    with _EDIT_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _edit_alternate_directories(add, remove)


def _edit_alternate_directories(add: list[Path], remove: list[Path]) -> None:
    main_cf = DEFAULT_CONFIG / "main.cf"
    if not main_cf.exists():
        main_cf.write_text("compatibility_level = 3.6\n")
    current = subprocess.run(
        ["postconf", "-c", str(DEFAULT_CONFIG), "-h", "alternate_config_directories"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    gone = {str(path) for path in remove}
    listed = [
        item
        for item in current.replace(",", " ").split()
        if Path(item).exists() and item not in gone
    ]
    value = " ".join(dict.fromkeys([*listed, *(str(path) for path in add)]))
    subprocess.run(
        ["postconf", "-c", str(DEFAULT_CONFIG), "-e", f"alternate_config_directories={value}"],
        check=True,
    )


def main_cf(base: Path, name: str, address: str, mynetworks: str) -> dict[str, str]:
    """The parameters of a lab instance's main.cf (an IPv4 one; a variant overrides some)."""
    return {
        "compatibility_level": "3.6",
        "myhostname": f"{name}.lab.example",
        "mydomain": "lab.example",
        "myorigin": "$myhostname",
        "mydestination": "$myhostname",
        "inet_interfaces": address,
        "inet_protocols": "ipv4",
        "smtp_bind_address": address,
        "mynetworks": mynetworks,
        "relay_domains": "",
        "transport_maps": f"texthash:{base}/transport",
        "queue_directory": f"{base}/queue",
        "data_directory": f"{base}/data",
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "maillog_file": f"{base}/log/postfix.log",
        "maillog_file_prefixes": f"/var, /dev/stdout, {base}/log",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "biff": "no",
        "smtpd_banner": "$myhostname ESMTP lab",
        "smtp_dns_support_level": "disabled",
        "smtpd_peername_lookup": "no",
        # the real-world closed relay: 554 (not the default's 454 "defer") for other domains
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        # no penalty sleep per refused command, so a 26-form battery takes well under a
        # second; the default hard error limit (20) stays, so the tester's reconnect runs
        # against a real server
        "smtpd_error_sleep_time": "0s",
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "2s",
        "smtp_connect_timeout": "5s",
        "bounce_queue_lifetime": "0",
        "maximal_queue_lifetime": "1h",
    }


def traversable(path: Path) -> None:
    """Let other users (a daemon that dropped root) reach `path` through the private tmp dirs."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o001 == 0:
            parent.chmod(mode | 0o011)


def write_instance(
    root: Path,
    name: str,
    address: str,
    mynetworks: str,
    collector: str,
    *,
    extra: dict[str, str] | None = None,
    **instance: str,
) -> PostfixInstance:
    """Write the directories and configuration of one instance that hands the collector
    domain to `collector` (a Postfix next hop, `[127.0.0.1]:2525`); `extra` overrides
    main.cf parameters, `instance` sets `PostfixInstance` fields."""
    base = root / name
    config_dir = base / "etc"
    for sub in ("etc", "log", "queue"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "transport").write_text(f"{COLLECTOR_DOMAIN} smtp:{collector}\n")
    parameters = main_cf(base, name, address, mynetworks) | (extra or {})
    lines = [f"{key} = {value}" for key, value in parameters.items()]
    (config_dir / "main.cf").write_text("\n".join(lines) + "\n")
    (config_dir / "master.cf").write_text(MASTER_CF)
    traversable(base)  # Postfix's daemons run as `postfix`
    (base / "data").mkdir(exist_ok=True)
    shutil.chown(base / "data", "postfix", "postfix")
    log_file = base / "log" / "postfix.log"
    return PostfixInstance(name, address, config_dir, log_file, **instance)


def _check_port_free(address: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, SMTP_PORT))
        except OSError as exc:
            pytest.fail(
                f"{address} port {SMTP_PORT} is taken (a leftover Postfix? ss -ltnp): {exc}"
            )


def _stop_leftovers() -> None:
    """Stop instances a crashed earlier run left behind (they would hold the addresses)."""
    if not _STARTED.exists():
        return
    for line in _STARTED.read_text().splitlines():
        if line and Path(line, "main.cf").exists():
            subprocess.run(["postfix", "-c", line, "abort"], capture_output=True, check=False)
    _STARTED.unlink()


@contextlib.contextmanager
def lab_lock() -> Iterator[Path]:
    """Hold the lab's lock (its addresses and port 25 are shared by every run), after
    stopping what a crashed earlier run left behind; yields a fresh directory for the run.

    The directory is not under pytest's: a pytest session started meanwhile (by anyone, as
    the same user) makes `/tmp/pytest-of-USER` private again, and Postfix's and postgrey's
    daemons, which drop root, could no longer reach their files.
    """
    need(os.geteuid() == 0, "the Postfix lab needs root (loopback aliases, postfix start)")
    need_program("postfix")
    need_program("ip")
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _stop_leftovers()
        with tempfile.TemporaryDirectory(prefix="dnsbl-postfix-lab-") as root:
            Path(root).chmod(0o711)
            yield Path(root)


@contextlib.contextmanager
def started(instances: list[PostfixInstance]) -> Iterator[None]:
    """Start `instances` side by side (under `lab_lock`); stop them on exit."""
    _STARTED.write_text("".join(f"{i.config_dir}\n" for i in instances))
    try:
        for instance in instances:
            if instance.netns is None:
                _ensure_loopback_alias(instance.address)
                _check_port_free(instance.address)
        set_alternate_directories([i.config_dir for i in instances], [])
        starting = [instance.start() for instance in instances]
        for instance, process in zip(instances, starting, strict=True):
            output, _ = process.communicate(timeout=60)
            assert process.returncode == 0, (
                f"postfix {instance.name} did not start: {output}{instance.log()}"
            )
            wait_for_port(instance.address, SMTP_PORT)
        yield
    finally:
        for instance in instances:
            instance.stop()
        set_alternate_directories([], [i.config_dir for i in instances])
        _STARTED.unlink(missing_ok=True)


@contextlib.contextmanager
def running_lab(collector_port: int) -> Iterator[PostfixLab]:
    """Start the open and the closed relay; stop them on exit."""
    collector = f"[127.0.0.1]:{collector_port}"
    with lab_lock() as root:
        instances = [
            write_instance(root, "open", OPEN_ADDRESS, "0.0.0.0/0", collector),
            write_instance(root, "closed", CLOSED_ADDRESS, f"{CLOSED_ADDRESS}/32", collector),
        ]
        with started(instances):
            yield PostfixLab(instances[0], instances[1], collector_port)


@pytest.fixture(name="postfix")
def postfix_fixture() -> Iterator[PostfixLab]:
    """The running lab for one test, its relays handing the collector domain to a collector
    the test starts on `postfix.collector_port` (`run_worker`'s, say)."""
    with running_lab(free_port()) as lab:
        yield lab


class ArrivalLog:
    """Arrivals recorded by the lab's collector (called on the collector's thread)."""

    def __init__(self) -> None:
        self.items: list[Arrival] = []

    def __call__(self, arrival: Arrival) -> None:
        self.items.append(arrival)

    def arrived(self, tokens: set[str]) -> list[Arrival]:
        """The arrivals so far that carry one of `tokens`."""
        return [arrival for arrival in list(self.items) if arrival.token in tokens]

    def wait_for(
        self,
        tokens: set[str],
        timeout: float,
        flush: PostfixInstance | None = None,
        count: int = 1,
    ) -> list[Arrival]:
        """Wait until `count` of `tokens` have arrived (or `timeout` passes); the arrivals."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len({arrival.token for arrival in self.arrived(tokens)}) >= count:
                break
            if flush is not None:
                flush.flush()
            time.sleep(0.2)
        return self.arrived(tokens)


@pytest.fixture(scope="module")
def lab_arrivals() -> ArrivalLog:
    """Every arrival at the lab's collector (shared by a module: filter by your tokens)."""
    return ArrivalLog()


@pytest.fixture(scope="module")
def lab_collector(lab_arrivals: ArrivalLog) -> Iterator[Collector]:
    """The collector the lab's relays deliver to, on a free port of 127.0.0.1."""
    settings = TesterSettings(collector_listen="127.0.0.1:0", collector_domain=COLLECTOR_DOMAIN)
    with Collector(settings, lab_arrivals) as collector:
        yield collector


@pytest.fixture(scope="module")
def postfix_lab(lab_collector: Collector) -> Iterator[PostfixLab]:
    """The running lab (one per test module: starting Postfix takes seconds).

    A test that reconfigures an instance must put it back (`open_relay()` / `close_relay()`).
    """
    with running_lab(lab_collector.endpoint[1]) as lab:
        yield lab
