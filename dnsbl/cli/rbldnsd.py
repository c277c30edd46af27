"""`dnsbl import` and `dnsbl export`: zones in and out as rbldnsd data or BIND zone files."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from dnsbl.cli.context import Context
from dnsbl.listings.store import ListingStore
from dnsbl.rbldnsd.data import DatasetType, LineProblem


def register(subparsers: Any) -> None:
    importing = subparsers.add_parser(
        "import",
        help="bulk-load rbldnsd data files or plain address lists into a zone",
        description="Read rbldnsd data files (ip4set, ip4trie, ip6trie, ip6tset syntax) or "
        "plain lists of addresses and networks into ZONE, in one transaction. A file may be "
        "given as TYPE:FILE (as rbldnsd's zone:type:file); a file whose name holds a type "
        "(bl.ip4trie) is read as that type unless --type says otherwise.",
    )
    importing.add_argument("zone")
    importing.add_argument("files", nargs="+", metavar="[TYPE:]FILE")
    importing.add_argument("--category", default="imported", help="default: imported")
    importing.add_argument(
        "--type",
        dest="kind",
        choices=[kind.value for kind in DatasetType],
        help="rbldnsd dataset type the files are written for (default: from the file name, "
        "else auto = ip4set for IPv4 lines, ip6trie for IPv6 lines)",
    )
    importing.add_argument(
        "--replace",
        action="store_true",
        help="end the category's listings that the files no longer contain",
    )
    importing.add_argument(
        "--zone-values",
        action="store_true",
        help="entries without any value take the zone's code and TXT instead of rbldnsd's "
        "default (127.0.0.2, no TXT)",
    )
    importing.set_defaults(handler=_import)

    exporting = subparsers.add_parser(
        "export", help="write a zone as rbldnsd data or as a BIND-style zone file"
    )
    exporting.add_argument("zone")
    exporting.add_argument("--format", choices=["rbldnsd", "bind"], default="rbldnsd")
    exporting.add_argument(
        "--family",
        choices=["4", "6"],
        help="rbldnsd format: only this address family (one dataset type per file)",
    )
    exporting.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    exporting.set_defaults(handler=_export)


def _import(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.cli.progress import Progress
    from dnsbl.rbldnsd.importer import import_files

    zone = context.settings.zone(args.zone)
    started = time.monotonic()
    paths: list[Path] = []
    kinds: list[DatasetType | None] = []
    for text in args.files:
        kind, path = _typed_file(text)
        if kind is None and args.kind is None:
            kind = _named_kind(path)
            if kind is not None:
                print(f"reading {path} as {kind} (from its name; --type to say otherwise)")
        paths.append(path)
        kinds.append(kind)
    total = sum(path.stat().st_size for path in paths if path.is_file())
    with Progress(total) as progress:

        def report(problem: LineProblem) -> None:
            progress.message(str(problem))

        result = import_files(
            _bulk_store(context),
            zone,
            paths,
            kind=DatasetType(args.kind or DatasetType.AUTO),
            kinds=kinds,
            category=args.category,
            replace=args.replace,
            zone_values=args.zone_values,
            actor="cli",
            report=report,
            progress=progress,
        )
    write = result.write
    assert write is not None
    print(
        f"{zone.name}: {result.lines:,} lines, {result.entries:,} entries: "
        f"{write.added:,} added, {write.unchanged:,} unchanged, {write.removed:,} replaced "
        f"or ended; {len(result.problems):,} problems; serial {write.serial} "
        f"({time.monotonic() - started:.1f} s)"
    )
    return 1 if result.problems and not result.entries else 0


def _bulk_store(context: Context) -> ListingStore:
    """The store an import writes through: its statements (a COPY of millions of rows, the
    change log's INSERT … SELECT) outlast any bound fit for a request, so only connecting is
    bounded."""
    from dnsbl.db import make_engine

    settings = context.settings
    engine = make_engine(
        settings.database_url,
        connect_timeout=settings.database_connect_timeout,
        statement_timeout=0,
    )
    store = ListingStore(engine)
    store.ensure_zones(settings.zone_names)
    return store


def _typed_file(text: str) -> tuple[DatasetType | None, Path]:
    """A FILE argument: its path, and its dataset type when `TYPE:` prefixes it."""
    head, colon, rest = text.partition(":")
    if colon and rest and head in set(DatasetType):
        return DatasetType(head), Path(rest)
    return None, Path(text)


def _named_kind(path: Path) -> DatasetType | None:
    """The dataset type a file's name holds (`bl.ip4trie`), if it holds exactly one."""
    found = [kind for kind in DatasetType if kind != "auto" and kind in path.name.lower()]
    return found[0] if len(found) == 1 else None


def _export(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.rbldnsd.exporter import export_zone

    zone = context.settings.zone(args.zone)
    family = int(args.family) if args.family else None
    if args.output is None:
        try:
            export_zone(context.engine, zone, sys.stdout, args.format, family=family)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader stopped early (`| head`): not an error; keep Python's exit quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    temporary = args.output.with_name(args.output.name + ".tmp")
    # Written aside and renamed, so that an rbldnsd reading the file never sees half of it.
    with temporary.open("w", encoding="utf-8") as out:
        export_zone(context.engine, zone, out, args.format, family=family)
    temporary.replace(args.output)
    return 0
