"""Parity with rbldnsd: random data files answer the same from rbldnsd and from dnsbl.

Random files (IPv4 and IPv6; singles, CIDRs, abbreviated prefixes, ranges, exclusions, values
in every form, `$` and `$n` substitutions) are loaded into a real rbldnsd and, through the
importer, into the store. rbldnsd's A and TXT answers (dnspython over UDP) for addresses at
and around every entry and at random are compared with the index's, and with dnsbl's own DNS
server's over a socket. The one tolerated difference: where ip4set gives one address several
values, rbldnsd answers them all and dnsbl the first of them (the importer warns).
"""

from __future__ import annotations

import ipaddress
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsbl.addresses import reverse_name
from dnsbl.config import ZoneSettings
from dnsbl.db import make_engine
from dnsbl.index.txt_template import render_txt
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.store import ListingStore
from dnsbl.node.loader import load_index
from dnsbl.rbldnsd.data import DatasetType
from dnsbl.rbldnsd.importer import import_files
from tests.conftest import need_program, zone_config
from tests.dns_support import running

pytestmark = pytest.mark.usefixtures("dns_engine")  # each engine in turn

Answer = tuple[frozenset[str], frozenset[str]]  # A codes, TXT texts
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def rbldnsd(directory: Path, specs: list[str]) -> Iterator[int]:
    """A foreground rbldnsd serving `specs` (zone:type:file, files in `directory`); its port."""
    program = need_program("rbldnsd")
    # rbldnsd chroots into the directory and reads the files as its own user.
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)
    port = free_port()
    log = directory / "rbldnsd.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [program, "-n", "-b", f"127.0.0.1/{port}", "-r", str(directory), "-w", "/", *specs],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        zone = specs[0].split(":")[0]
        while True:
            if process.poll() is not None:
                pytest.fail(f"rbldnsd exited: {log.read_text()}")
            try:
                query = dns.message.make_query("2.0.0.127." + zone, "A")
                dns.query.udp(query, "127.0.0.1", port=port, timeout=0.3)
                break
            except (OSError, dns.exception.Timeout):
                if time.monotonic() > deadline:
                    pytest.fail("rbldnsd did not answer")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


async def ask(port: int, name: str) -> Answer:
    """The A and TXT answers of the server at `port` for `name`."""
    found: dict[str, frozenset[str]] = {}
    for rdtype in ("A", "TXT"):
        query = dns.message.make_query(name, rdtype, use_edns=False)
        reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=3)
        wanted = dns.rdatatype.from_text(rdtype)
        found[rdtype] = frozenset(
            rd.address if rdtype == "A" else b"".join(rd.strings).decode()
            for rrset in reply.answer
            if rrset.rdtype == wanted
            for rd in rrset
        )
    return found["A"], found["TXT"]


def index_answer(index: ZoneIndex, address: IP) -> Answer:
    values = index.lookup(address.version, int(address))
    return (
        frozenset(value.code for value in values),
        frozenset(render_txt(value.txt, str(address)) for value in values if value.txt),
    )


# -- random data ---------------------------------------------------------------------------------

_TEXTS = ["listed $", "see $1 for $", "costs $$5 at $", "plain", "$2 stays", "x$y"]


def _value(rng: random.Random) -> str:
    code = rng.randint(2, 12)
    return rng.choice(
        [
            "",
            "",
            "",
            f" :{code}",
            f" :{code}:",
            f" :{code}:{rng.choice(_TEXTS)}",
            f" :127.0.0.{code}:{rng.choice(_TEXTS)}",
            f" {rng.choice(_TEXTS)}",
        ]
    )


def _v4_network(rng: random.Random, dense: bool = False) -> ipaddress.IPv4Network:
    if dense:  # two /24s: entries meet at the same ip4set units all the time (ties)
        address = 0x0A000000 | rng.randint(0, 1) << 8 | rng.getrandbits(8)
    else:
        address = 0x0A000000 | rng.randint(0, 3) << 16 | rng.randint(0, 7) << 8 | rng.getrandbits(8)
    length = rng.choice([8, 12, 16, 20, 23, 24, 24, 25, 28, 30, 31, 32, 32, 32, 32])
    return ipaddress.IPv4Network((address, length), strict=False)


def _v4_text(rng: random.Random, ranges: bool, dense: bool = False) -> str:
    net = _v4_network(rng, dense)
    first = net.network_address
    form = rng.random()
    if ranges and form < 0.2:
        last = ipaddress.IPv4Address(min(int(first) + rng.randint(0, 3000), 0x0AFFFFFF))
        if last.packed[:3] == first.packed[:3] and rng.random() < 0.5:
            return f"{first}-{last.packed[3]}"
        return f"{first}-{last}"
    if net.prefixlen in (16, 24) and form < 0.5:
        return ".".join(str(first).split(".")[: net.prefixlen // 8])
    if net.prefixlen == 32 and form < 0.8:
        return str(first)
    return str(net)


def ip4_file(rng: random.Random, lines: int, *, ranges: bool, dense: bool = False) -> str:
    out = ["# random ip4 data", "$1 http://example.org/$"]
    if rng.random() < 0.7:
        out.append(f":{rng.randint(2, 9)}:{rng.choice(_TEXTS)}")
    for _ in range(lines):
        text = _v4_text(rng, ranges, dense)
        if rng.random() < 0.2:
            out.append("!" + text)
        else:
            out.append(text + _value(rng))
    return "\n".join(out) + "\n"


def _v6_network(rng: random.Random) -> ipaddress.IPv6Network:
    address = (
        (0x20010DB8 << 96)
        | rng.randint(0, 3) << 64
        | rng.getrandbits(64) >> rng.choice([0, 32, 60, 62])
    )
    length = rng.choice([32, 48, 56, 60, 63, 64, 64, 96, 120, 124, 127, 128, 128, 128])
    return ipaddress.IPv6Network((address, length), strict=False)


def ip6_file(rng: random.Random, lines: int) -> str:
    # The same variable as the IPv4 file: `auto` reads both files as one set of variables.
    out = ["$1 http://example.org/$"]
    if rng.random() < 0.7:
        out.append(f":{rng.randint(2, 9)}:v6 {rng.choice(_TEXTS)}")
    for _ in range(lines):
        net = _v6_network(rng)
        text = str(net)
        if net.prefixlen == 64 and rng.random() < 0.5:
            text = ":".join(net.network_address.exploded.split(":")[:4])
        out.append("!" + text if rng.random() < 0.2 else text + _value(rng))
    return "\n".join(out) + "\n"


def ip6tset_file(rng: random.Random, lines: int) -> str:
    out = [f":{rng.randint(2, 9)}:tset $"]
    for _ in range(lines):
        net = _v6_network(rng)
        half = ":".join(net.network_address.exploded.split(":")[:4])
        if rng.random() < 0.2:
            out.append(f"!{half}:0:0:0:{rng.randint(0, 3)}")
        else:
            out.append(half)
    return "\n".join(out) + "\n"


def _probes(rng: random.Random, files: list[Path], count: int) -> list[IP]:
    """Addresses at and around the networks of the files' lines, and random ones."""
    probes: set[IP] = set()
    for path in files:
        for line in path.read_text().splitlines():
            token = line.lstrip("!").split(" ")[0]
            if not token or token[0] in "#:$":
                continue
            for net in _networks(token):
                top = (1 << net.max_prefixlen) - 1
                first, last = int(net.network_address), int(net.broadcast_address)
                for value in (first, last, first - 1, last + 1, rng.randint(first, last)):
                    if 0 <= value <= top:
                        probes.add(
                            ipaddress.ip_address(value)
                            if net.version == 6
                            else ipaddress.IPv4Address(value)
                        )
    chosen = rng.sample(sorted(probes, key=lambda a: (a.version, int(a))), min(count, len(probes)))
    chosen += [ipaddress.IPv4Address(0x0A000000 | rng.getrandbits(18)) for _ in range(count // 4)]
    return chosen


def _networks(token: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if ":" in token:
        groups = token.count(":") + 1
        if "/" not in token and "::" not in token and groups < 8:
            token += f"::/{16 * groups}"
        return [ipaddress.ip_network(token, strict=False)]
    if "-" in token:
        first, last = token.split("-")
        if "." not in last:
            last = ".".join([*first.split(".")[:-1], last])
        return list(
            ipaddress.summarize_address_range(
                ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
            )
        )
    if "/" not in token and token.count(".") < 3:
        length = 8 * (token.count(".") + 1)
        token = ".".join((token.split(".") + ["0"] * 4)[:4]) + f"/{length}"
    return [ipaddress.ip_network(token, strict=False)]


# -- the test ------------------------------------------------------------------------------------


def _zone(name: str) -> ZoneSettings:
    return ZoneSettings(**zone_config(name))


async def test_random_files_answer_as_rbldnsd_does(tmp_path: Path, sqlite_url: str) -> None:
    # The store's part is tested on both databases elsewhere; here SQLite is enough.
    need_program("rbldnsd")
    engine = make_engine(sqlite_url)
    store = ListingStore(engine)
    rng = random.Random(5782)
    data = tmp_path / "data"
    data.mkdir()
    files = {
        "v4.txt": ip4_file(rng, 250, ranges=True),
        "v6.txt": ip6_file(rng, 120),
        "trie.txt": ip4_file(rng, 250, ranges=False),
        "tset.txt": ip6tset_file(rng, 80),
        "dense.txt": ip4_file(rng, 300, ranges=True, dense=True),
    }
    for name, text in files.items():
        (data / name).write_text(text)
    datasets = [
        ("set.example.org", ["v4.txt", "v6.txt"], DatasetType.AUTO),
        ("trie.example.org", ["trie.txt"], DatasetType.IP4TRIE),
        ("tset.example.org", ["tset.txt"], DatasetType.IP6TSET),
        ("ties.example.org", ["dense.txt"], DatasetType.IP4SET),
    ]
    store.ensure_zones([zone for zone, _, _ in datasets])
    indexes: dict[str, ZoneIndex] = {}
    for zone_name, names, kind in datasets:
        zone = _zone(zone_name)
        import_files(store, zone, [data / name for name in names], kind=kind)
        indexes[zone_name] = load_index(engine, zone)
    specs = [
        "set.example.org:ip4set:v4.txt",
        "set.example.org:ip6trie:v6.txt",
        "trie.example.org:ip4trie:trie.txt",
        "tset.example.org:ip6tset:tset.txt",
        "ties.example.org:ip4set:dense.txt",
    ]
    compared = 0
    with rbldnsd(data, specs) as port:
        async with running(
            list(indexes.values()), zones=[_zone(z) for z, _, _ in datasets]
        ) as server:
            ours = server.endpoints[0][1]
            for zone_name, names, _ in datasets:
                index = indexes[zone_name]
                for address in _probes(rng, [data / name for name in names], 320):
                    name = reverse_name(address, zone_name)
                    theirs = await ask(port, name)
                    expected = index_answer(index, address)
                    assert expected == theirs, (name, str(address))
                    assert await ask(ours, name) == expected, name
                    compared += 1
    assert compared > 900
    engine.dispose()
