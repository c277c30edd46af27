"""A DNS node's last-known-good snapshot (`dns.snapshot`): every zone's index in one file.

The node writes it after each full load and each compaction, and reads it at start: a node
that has one answers within a second or two of launch, whatever the size of its zones, and
then catches up from the change log after the snapshot's serials — also when the database is
unreachable, so a restart during an outage still answers from the last index it held.

The file is written aside and renamed over the old one (a reader never sees half of it), and
is read only when it is whole (its checksum) and only for zones whose configuration is the one
it was written under (a changed TXT template or code would answer differently): any other
zone is loaded from the database as without a snapshot.

Layout: a magic line, the length of a JSON header (4 bytes, big-endian), the header, then the
arrays of every level in the header's order — IPv4 starts as 32-bit integers and value ids as
the index holds them (in the byte order the header names), IPv6 starts as 16 bytes each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dnsbl.config import ZoneSettings
from dnsbl.index.values import Value, ValueDefaults
from dnsbl.index.zone_index import ZoneIndex

log = logging.getLogger(__name__)

MAGIC = b"dnsbl-node-snapshot 1\n"
_IP6_BYTES = 16


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a snapshot file gave back: the indexes of the zones it could restore, the moment
    up to which expired listings were already out of them, and the zones whose index hid
    expired listings under a serial that had held them (see `ZoneFollower`)."""

    indexes: dict[str, ZoneIndex]
    expired_until: datetime | None
    rewritten: frozenset[str]
    written: datetime | None


def fingerprint(zone: ZoneSettings) -> str:
    """What a zone's snapshot depends on: its whole configuration, hashed."""
    return hashlib.sha256(zone.model_dump_json().encode()).hexdigest()


def write_snapshot(
    path: Path,
    indexes: Mapping[str, ZoneIndex],
    zones: Mapping[str, ZoneSettings],
    *,
    expired_until: datetime | None,
    rewritten: frozenset[str] | set[str] = frozenset(),
) -> int:
    """Write every index of `indexes` (compacted first) to `path`, atomically; returns the
    file's size in bytes."""
    blobs: list[Any] = []  # arrays as they are held (written through their buffers, no copy)
    described = []
    for name, index in indexes.items():
        whole = index.compacted() if index.overlay_size else index
        tables: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for category, family, length, starts, ids in whole.levels():
            blobs.append(starts if family == 4 else _ip6_bytes(starts))
            blobs.append(ids)
            tables.setdefault((category, family), []).append(
                {"length": length, "count": len(ids), "ids": ids.typecode}
            )
        described.append(
            {
                "name": name,
                "fingerprint": fingerprint(zones[name]),
                "serial": whole.serial,
                "rewritten": name in rewritten,
                "values": [_value_json(value) for value in whole.values],
                "tables": [
                    {"category": category, "family": family, "levels": levels}
                    for (category, family), levels in tables.items()
                ],
            }
        )
    checksum = 0
    for blob in blobs:
        checksum = zlib.crc32(memoryview(blob).cast("B"), checksum)
    header = json.dumps(
        {
            "written": datetime.now().astimezone().isoformat(),
            "expired_until": expired_until.isoformat() if expired_until else None,
            "byteorder": sys.byteorder,
            "crc32": checksum,
            "zones": described,
        }
    ).encode()
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as out:
            out.write(MAGIC + struct.pack(">I", len(header)) + header)
            for blob in blobs:
                out.write(memoryview(blob).cast("B"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path.stat().st_size


def read_snapshot(path: Path, zones: Mapping[str, ZoneSettings]) -> Snapshot | None:
    """The indexes `path` holds for `zones` (those written under the same configuration);
    None when there is no file or it is not a whole snapshot (each case logged once)."""
    started = time.monotonic()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.info("no snapshot at %s yet: loading from the database", path)
        return None
    except OSError as exc:
        log.warning("snapshot %s cannot be read (%s): loading from the database", path, exc)
        return None
    try:
        snapshot = _parse(memoryview(data), zones)
    except (ValueError, KeyError, TypeError, struct.error) as exc:
        log.warning("snapshot %s is not usable (%s): loading from the database", path, exc)
        return None
    for name, index in snapshot.indexes.items():
        log.info(
            "zone %s restored from snapshot %s: %d entries at serial %d in %.2f s",
            name,
            path,
            len(index),
            index.serial,
            time.monotonic() - started,
        )
    return snapshot


def _parse(data: memoryview, zones: Mapping[str, ZoneSettings]) -> Snapshot:
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise ValueError("not a dnsbl node snapshot")
    (size,) = struct.unpack_from(">I", data, len(MAGIC))
    body = len(MAGIC) + 4 + size
    header = json.loads(bytes(data[len(MAGIC) + 4 : body]))
    if zlib.crc32(data[body:]) != header["crc32"]:
        raise ValueError("checksum mismatch (a damaged file)")
    swap = header["byteorder"] != sys.byteorder
    blobs = _Blobs(data, body)
    indexes: dict[str, ZoneIndex] = {}
    rewritten = set()
    for described in header["zones"]:
        name = described["name"]
        zone = zones.get(name)
        arrays: dict[tuple[str, int], dict[int, tuple[Any, array[int]]]] = {}
        for table in described["tables"]:
            levels = arrays.setdefault((table["category"], table["family"]), {})
            for level in table["levels"]:
                starts = blobs.starts(table["family"], level["count"], swap)
                levels[level["length"]] = (starts, blobs.ids(level["ids"], level["count"], swap))
        if zone is None or described["fingerprint"] != fingerprint(zone):
            log.info("snapshot of zone %s is for another configuration: not used", name)
            continue
        values = tuple(_value(each) for each in described["values"])
        indexes[name] = ZoneIndex.from_arrays(
            name, described["serial"], ValueDefaults.of(zone), values, arrays
        )
        if described["rewritten"]:
            rewritten.add(name)
    if blobs.position != len(data):
        raise ValueError("trailing bytes after the last array")
    expired = header["expired_until"]
    return Snapshot(
        indexes,
        datetime.fromisoformat(expired) if expired else None,
        frozenset(rewritten),
        datetime.fromisoformat(header["written"]),
    )


class _Blobs:
    """The arrays after the header, taken one after another."""

    def __init__(self, data: memoryview, position: int) -> None:
        self.data = data
        self.position = position

    def take(self, size: int) -> memoryview:
        end = self.position + size
        if end > len(self.data):
            raise ValueError("the file ends inside an array")
        piece = self.data[self.position : end]
        self.position = end
        return piece

    def starts(self, family: int, count: int, swap: bool) -> Any:
        if family == 4:
            return self.ids("I", count, swap)
        raw = self.take(count * _IP6_BYTES)
        return [int.from_bytes(raw[i : i + _IP6_BYTES]) for i in range(0, len(raw), _IP6_BYTES)]

    def ids(self, typecode: str, count: int, swap: bool) -> array[int]:
        found = array(typecode)
        found.frombytes(self.take(count * found.itemsize))
        if swap:
            found.byteswap()
        return found


def _ip6_bytes(starts: Any) -> bytes:
    return b"".join(start.to_bytes(_IP6_BYTES) for start in starts)


def _value_json(value: Value | None) -> list[str | None] | None:
    return None if value is None else [value.category, value.code, value.txt]


def _value(raw: list[str | None] | None) -> Value | None:
    if raw is None:
        return None
    category, code, txt = raw
    assert category is not None and code is not None
    return Value(category, code, txt)
