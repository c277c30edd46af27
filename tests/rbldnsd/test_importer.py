"""The importer on SQLite and PostgreSQL: one transaction, problems, replace, values, the CLI."""

from __future__ import annotations

import gzip
import io
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from dnsbl.addresses import parse_network
from dnsbl.cli import main
from dnsbl.cli.progress import Progress
from dnsbl.config import Settings, ZoneSettings
from dnsbl.errors import ImportFormatError, UnknownZoneError
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.models import utcnow
from dnsbl.node.loader import load_index
from dnsbl.rbldnsd.data import DatasetType, LineProblem
from dnsbl.rbldnsd.importer import import_files
from tests.conftest import ZONE, write_config, zone_config


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _answer(engine: Engine, zone: ZoneSettings, address: str) -> list[tuple[str, str | None]]:
    import ipaddress

    ip = ipaddress.ip_address(address)
    return [(v.code, v.txt) for v in load_index(engine, zone).lookup(ip.version, int(ip))]


def test_files_are_imported_in_one_write_with_explicit_values(
    tmp_path: Path, store: ListingStore, engine: Engine, settings: Settings
) -> None:
    zone = settings.zone(ZONE)
    plain = _write(tmp_path / "plain.txt", "192.0.2.1\n198.51.100.0/24\n2001:db8::/32\n")
    data = _write(tmp_path / "data.txt", ":3:Listed $\n203.0.113.0/24\n!203.0.113.5\n")
    before = store.serial(ZONE)
    result = import_files(store, zone, [plain, data])
    assert result.write is not None
    assert (result.files, result.lines, result.entries) == (2, 6, 5)
    assert result.write.serial == before + 1 and result.write.added == 5
    # No value and no default line: rbldnsd's 127.0.0.2 and no TXT, not the zone's template.
    assert _answer(engine, zone, "192.0.2.1") == [("127.0.0.2", None)]
    assert _answer(engine, zone, "203.0.113.9") == [("127.0.0.3", "Listed $")]
    assert _answer(engine, zone, "203.0.113.5") == []
    [listing] = listings_containing(store.engine, "192.0.2.1")
    assert (listing.category, listing.source, listing.txt) == ("imported", "import", "")


def test_zone_values_give_valueless_entries_the_zones_code_and_text(
    tmp_path: Path, store: ListingStore, engine: Engine, settings: Settings
) -> None:
    zone = settings.zone(ZONE)
    path = _write(tmp_path / "list.txt", "192.0.2.1\n192.0.2.2 :5\n")
    import_files(store, zone, [path], category="relay-output", zone_values=True)
    assert _answer(engine, zone, "192.0.2.1") == [("127.0.0.3", zone.txt)]
    assert _answer(engine, zone, "192.0.2.2") == [("127.0.0.5", None)]


def test_bad_lines_are_reported_with_file_and_line_and_skipped(
    tmp_path: Path, store: ListingStore, settings: Settings
) -> None:
    path = _write(
        tmp_path / "bad.txt",
        "192.0.2.1\nnot an address\n$SOA 0 a b 1 2 3 4 5\n192.0.2.0/33\n192.0.2.2\n",
    )
    reported: list[LineProblem] = []
    result = import_files(store, settings.zone(ZONE), [path], report=reported.append)
    assert [str(p) for p in reported] == [
        f"{path}:2: invalid address",
        f"{path}:3: $SOA ignored: dnsbl takes it from its configuration",
        f"{path}:4: invalid address",
    ]
    assert result.entries == 2 and result.write and result.write.added == 2


def test_an_unreadable_file_or_unknown_zone_writes_nothing(
    tmp_path: Path, store: ListingStore, settings: Settings
) -> None:
    good = _write(tmp_path / "good.txt", "192.0.2.1\n")
    before = store.serial(ZONE)
    with pytest.raises(ImportFormatError, match=r"missing\.txt: cannot read"):
        import_files(store, settings.zone(ZONE), [good, tmp_path / "missing.txt"])
    other = ZoneSettings(**zone_config("other.example.org"))
    with pytest.raises(UnknownZoneError):
        import_files(store, other, [good])
    assert store.serial(ZONE) == before
    assert listings_containing(store.engine, "192.0.2.1", active_only=False) == []


def test_replace_ends_what_the_files_no_longer_list_and_reimport_is_a_no_op(
    tmp_path: Path, store: ListingStore, settings: Settings
) -> None:
    zone = settings.zone(ZONE)
    first = _write(tmp_path / "v1.txt", "192.0.2.1\n192.0.2.2\n")
    second = _write(tmp_path / "v2.txt", "192.0.2.2\n192.0.2.3\n")
    import_files(store, zone, [first])
    again = import_files(store, zone, [first])
    assert again.write and (again.write.added, again.write.unchanged) == (0, 2)
    result = import_files(store, zone, [second], replace=True)
    assert result.write and (result.write.added, result.write.removed) == (1, 1)
    assert listings_containing(store.engine, "192.0.2.1") == []
    assert [x.network for x in listings_containing(store.engine, "192.0.2.3")] == ["192.0.2.3/32"]


def test_ip4set_ties_are_stored_in_tie_categories_and_replaced_with_the_category(
    tmp_path: Path, store: ListingStore, engine: Engine, settings: Settings
) -> None:
    zone = settings.zone(ZONE)
    tied = _write(tmp_path / "tied.txt", "10.0.0.0/8 :3:a\n10.0.0.0/8 :4:b\n10.0.0.0/8 :5:c\n")
    import_files(store, zone, [tied], kind=DatasetType.IP4SET, category="feed")
    assert sorted(_answer(engine, zone, "10.9.9.9")) == [
        ("127.0.0.3", "a"),
        ("127.0.0.4", "b"),
        ("127.0.0.5", "c"),
    ]
    assert sorted(x.category for x in listings_containing(store.engine, "10.9.9.9")) == [
        "feed",
        "feed+2",
        "feed+3",
    ]
    # Replacing the category replaces its ties too: nothing of the old file is left over.
    plain = _write(tmp_path / "plain.txt", "10.0.0.0/8 :6:d\n")
    result = import_files(
        store, zone, [plain], kind=DatasetType.IP4SET, category="feed", replace=True
    )
    assert result.write and (result.write.added, result.write.removed) == (1, 3)
    assert _answer(engine, zone, "10.9.9.9") == [("127.0.0.6", "d")]


def test_gzip_files_and_explicit_types(
    tmp_path: Path, store: ListingStore, engine: Engine, settings: Settings
) -> None:
    zone = settings.zone(ZONE)
    path = tmp_path / "data.gz"
    with gzip.open(path, "wt") as out:
        out.write("!10.0.0.0/25\n10.0.0.0/26 :4\n")
    import_files(store, zone, [path], kind=DatasetType.IP4TRIE)
    assert _answer(engine, zone, "10.0.0.1") == [("127.0.0.4", None)]
    assert _answer(engine, zone, "10.0.0.100") == []


def test_progress_draws_a_bar_with_rate_and_eta_on_a_terminal_and_counts_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    with Progress(4_000_000, terminal) as bar:
        bar.update(5, 1_000_000)
        time.sleep(0.05)  # the rate is worked out between two updates
        bar.update(10, 2_000_000)
        bar.message("data.txt:3: invalid address")
    drawn = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", terminal.getvalue())
    assert "data.txt:3: invalid address" in drawn
    last = drawn.rstrip().splitlines()[-1]
    # the share, the bytes, the rate, the time left and the lines, on the bar's line
    assert re.search(r"reading .* 50% 2\.0/4\.0 MB .*/s \d+:\d\d:\d\d 10 lines", last), last
    log = io.StringIO()
    with Progress(1000, log, every=100) as counter:
        counter.update(50, 10)
        counter.update(150, 20)
    assert re.fullmatch(r"read 150 lines \([\d,]+ lines/s, 2%, ~[\d,]+ s left\)\n", log.getvalue())


def test_cli_import_reports_problems_on_stderr_and_a_summary(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "dnsbl.toml", database_url)
    path = _write(tmp_path / "list.txt", "192.0.2.1\nbogus\n")
    assert main(["--config", str(config), "import", ZONE, str(path), "--category", "x"]) == 0
    captured = capsys.readouterr()
    assert f"{path}:2: invalid address" in captured.err
    assert f"{ZONE}: 2 lines, 1 entries: 1 added, 0 unchanged" in captured.out
    assert main(["--config", str(config), "import", "nope.example.org", str(path)]) == 2
    assert "unknown zone" in capsys.readouterr().err


def test_cli_import_takes_each_files_dataset_type_as_rbldnsd_does(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path / "dnsbl.toml", database_url)
    zone = settings.zone(ZONE)
    # ip4set and ip4trie differ here: a /26 inside an excluded /25 (ip4set: both /32 units,
    # the exclusion wins; ip4trie: the longer prefix wins).
    data = "!10.0.0.0/25\n10.0.0.0/26\n"
    plain = _write(tmp_path / "plain.txt", data)
    named = _write(tmp_path / "bl.ip4trie", data.replace("10.0.0", "10.0.1"))
    prefixed = _write(tmp_path / "other.txt", data.replace("10.0.0", "10.0.2"))

    def run(*args: str) -> int:
        return main(["--config", str(config), "import", ZONE, *args])

    assert run(str(plain), "--category", "set") == 0
    assert run(str(named), "--category", "trie1") == 0
    assert f"reading {named} as ip4trie (from its name" in capsys.readouterr().out
    assert run(f"ip4trie:{prefixed}", "--category", "trie2") == 0
    assert _answer(engine, zone, "10.0.0.5") == []  # auto: ip4set
    assert _answer(engine, zone, "10.0.1.5") == [("127.0.0.2", None)]
    assert _answer(engine, zone, "10.0.2.5") == [("127.0.0.2", None)]
    # --type wins over a name; `auto` lines follow the type another file gives the family.
    assert run(str(named), "--type", "ip4set", "--category", "trie1", "--replace") == 0
    assert _answer(engine, zone, "10.0.1.5") == []
    assert run(str(plain), f"ip4trie:{prefixed}", "--category", "mixed") == 0
    assert _answer(engine, zone, "10.0.0.5") == [("127.0.0.2", None)]
    # Two types of one family are two datasets: refused before anything is read.
    serial = ListingStore(engine).serial(ZONE)
    assert run(f"ip4set:{plain}", f"ip4trie:{prefixed}") == 2
    assert "ip4set and ip4trie files cannot be one import" in capsys.readouterr().err
    assert ListingStore(engine).serial(ZONE) == serial


def test_bulk_rewrites_compare_with_the_whole_zone(
    tmp_path: Path, store: ListingStore, engine: Engine, settings: Settings
) -> None:
    # More entries than one probe batch: the store scans the zone instead (its bulk path).
    zone = settings.zone(ZONE)
    lines = [f"10.0.{i >> 8}.{i & 255}" for i in range(6000)]
    first = _write(tmp_path / "v1.txt", "\n".join(lines) + "\n")
    import_files(store, zone, [first])
    changed = [*lines[2:5999], "10.0.0.1 :7", "10.200.0.1"]
    second = _write(tmp_path / "v2.txt", "\n".join(changed) + "\n")
    result = import_files(store, zone, [second], replace=True)
    assert result.write is not None
    # 10.0.0.1 changes value, 10.0.0.0 and 10.0.23.111 are gone, 10.200.0.1 is new.
    assert (result.write.added, result.write.removed, result.write.unchanged) == (2, 3, 5997)
    assert _answer(engine, zone, "10.0.0.1") == [("127.0.0.7", None)]
    assert _answer(engine, zone, "10.0.0.0") == []
    expiring = [
        Entry(
            parse_network(f"10.1.{i >> 8}.{i & 255}"), "t", expires_at=utcnow() + timedelta(days=1)
        )
        for i in range(5001)
    ]
    store.add(ZONE, expiring, actor="t")
    again = store.add(ZONE, expiring, actor="t")
    assert (again.added, again.unchanged) == (0, 5001)


def _log(engine: Engine) -> tuple[int, int, int, int]:
    """Listings, change rows, change rows whose listing is in the change's zone, and the
    distinct serials of the log (the references the store keeps itself on PostgreSQL)."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM listings), count(*), count(l.id),"
                " count(DISTINCT c.serial) FROM changes c"
                " LEFT JOIN listings l ON l.id = c.listing_id AND l.zone_id = c.zone_id"
            )
        ).one()
    return row[0], row[1], row[2], row[3]


def test_an_import_logs_an_add_per_listing_under_one_serial_and_a_reimport_writes_nothing(
    tmp_path: Path, store: ListingStore, engine: Engine, settings: Settings
) -> None:
    zone = settings.zone(ZONE)
    lines = [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(0, 30000, 3)]
    data = _write(tmp_path / "big.txt", "\n".join(reversed(lines)) + "\n")
    before = store.serial(ZONE)
    result = import_files(store, zone, [data])
    assert result.write and result.write.added == 10000
    assert store.serial(ZONE) == result.write.serial == before + 1
    assert _log(engine) == (10000, 10000, 10000, 1)
    again = import_files(store, zone, [data])
    assert again.write and (again.write.added, again.write.unchanged) == (0, 10000)
    assert store.serial(ZONE) == before + 1
    assert _log(engine) == (10000, 10000, 10000, 1)


def test_an_import_failing_after_its_listings_are_written_leaves_nothing(
    tmp_path: Path,
    store: ListingStore,
    engine: Engine,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def log_fails(*args: object) -> None:
        raise RuntimeError("disk on fire")

    data = _write(tmp_path / "data.txt", "".join(f"10.0.{i >> 8}.{i & 255}\n" for i in range(600)))
    before = store.serial(ZONE)
    monkeypatch.setattr(ListingStore, "_log_added", log_fails)
    with pytest.raises(RuntimeError):
        import_files(store, settings.zone(ZONE), [data])
    assert store.serial(ZONE) == before
    assert _log(engine) == (0, 0, 0, 0)
