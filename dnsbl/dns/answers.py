"""The general path: any query, parsed and answered through dnslib.

Everything the hot path (`wire`) passes on comes here: EDNS with options or another version,
apex and prefix names, other types and classes, zone transfers, and every malformed packet.
It is also the oracle the hot path is tested against, so it decides on its own (through
`query.look_up`) and encodes with dnslib. It does no I/O; a transfer's messages are built by
`transfer`, and the server sends whatever list of messages it returns.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from collections.abc import Callable, Iterable
from typing import NamedTuple

from dnslib import (
    EDNS0,
    NS,
    RR,
    SOA,
    TXT,
    A,
    DNSHeader,
    DNSLabel,
    DNSQuestion,
    DNSRecord,
    EDNSOption,
)
from dnslib.dns import DNSBuffer

from dnsbl.addresses import address_text
from dnsbl.config import ZoneSettings
from dnsbl.dns import transfer
from dnsbl.dns.access import (
    DENIED_CODE,
    OVER_QUOTA_CODE,
    Access,
    Decision,
    Verdict,
    source_address,
)
from dnsbl.dns.codes import Opcode, Rcode, RecordClass, RecordType, qtype_label
from dnsbl.dns.cookies import (
    NO_COOKIE,
    OPTION_COOKIE,
    CookieCheck,
    Cookies,
    CookieState,
    MalformedCookie,
)
from dnsbl.dns.query import NameState, look_up
from dnsbl.dns.tsig import TsigError, TsigKeys, with_record
from dnsbl.dns.zones import PublishedZone, ZoneTable, txt_strings
from dnsbl.index.txt_template import render_txt
from dnsbl.index.zone_index import ZoneIndex

log = logging.getLogger(__name__)

TYPE_OPT = RecordType.OPT
TYPE_IXFR = RecordType.IXFR
TYPE_AXFR = RecordType.AXFR
TYPE_ANY = RecordType.ANY
TCP_LIMIT = 65535
_CODE_TTL = 60  # a denied or over-quota answer: short, so that access granted shows soon
RecordSource = Callable[[ZoneIndex, ZoneSettings], Iterable[tuple[str, str, int, str]]]


class Reply(NamedTuple):
    """What to send back (no message: drop the query), and what to count: (zone, qtype,
    rcode) as `Responder.respond` gives it ((zone, rcode) on the way there). `proven`: the
    query carried a valid server cookie (so its source is no forgery: not rate limited)."""

    messages: Iterable[bytes]
    key: tuple[str, ...]
    proven: bool = False


_DROP = Reply([], ("-", "-", "DROPPED"))


class _Refusal(Exception):
    """The query is answered with just an rcode (and its question, when it has one)."""

    def __init__(self, rcode: Rcode, zone: str = "-") -> None:
        super().__init__(rcode)
        self.rcode = rcode
        self.zone = zone


class Responder:
    """Answers one query message of any shape, given the zones and the transfer policy."""

    def __init__(
        self,
        table: ZoneTable,
        *,
        max_payload: int,
        transfer_peers: Iterable[str] = (),
        transfer_keys: TsigKeys | None = None,
        records: RecordSource | None = None,
        access: Access | None = None,
        cookies: Cookies | None = None,
        strict_cookies: bool = False,
    ) -> None:
        self.table = table
        self.access = access or Access([])
        self.cookies = cookies
        # A bad server cookie over UDP gets BADCOOKIE (RFC 7873 §5.2.3) rather than an answer
        # when rate limiting is on: the client then proves its address with the fresh one.
        self.strict_cookies = strict_cookies
        self.max_payload = max_payload
        self.transfer_peers = [ipaddress.ip_network(p, strict=False) for p in transfer_peers]
        self.keys = transfer_keys or TsigKeys(())
        self.records = records

    def may_transfer(self, peer: str) -> bool:
        """Whether `peer` (an IP address) may AXFR/IXFR."""
        address = source_address(peer)
        return address is not None and any(address in net for net in self.transfer_peers)

    def respond(self, packet: bytes, *, tcp: bool = False, peer: str = "") -> Reply:
        """The reply to `packet` received over TCP or UDP from `peer`, and its count key
        (zone, qtype, rcode). Never raises."""
        if len(packet) < 12 or packet[2] & 0x80:
            return _DROP  # too short to answer, or itself a response: answering could loop
        try:
            record = _parse(packet)
        except Exception:
            return Reply([_header_only(packet, Rcode.FORMERR)], ("-", "-", Rcode.FORMERR.name))
        # The replies below are keyed (zone, rcode); the question's type goes in between.
        qtype = qtype_label(record.q.qtype) if record.questions else "-"
        reply = self._reply(record, packet, tcp=tcp, peer=peer)
        zone, rcode = reply.key
        return Reply(reply.messages, (zone, qtype, rcode), reply.proven)

    def _reply(self, record: DNSRecord, packet: bytes, *, tcp: bool, peer: str) -> Reply:
        signer = None
        if any(rr.rtype == RecordType.TSIG for rr in record.ar):
            try:
                signer = self.keys.verify(packet)
            except TsigError as exc:
                log.info("TSIG of a query from %s refused: %s", peer or "?", exc)
                refusal = _rcode_reply(record, Rcode.NOTAUTH, self._opt(record))
                if exc.record:
                    refusal = with_record(refusal, exc.record)
                return Reply([refusal], ("-", Rcode.NOTAUTH.name))
        cookie = NO_COOKIE
        try:
            cookie = self._cookie(record, peer)
            if cookie.state is CookieState.BAD and not tcp and self.strict_cookies:
                return Reply([_badcookie(record, self._opt(record, cookie))], ("-", "BADCOOKIE"))
            reply = self._respond(
                record, tcp=tcp, peer=peer, signed=signer is not None, cookie=cookie
            )
            reply = reply._replace(proven=cookie.state is CookieState.VALID)
        except _Refusal as refusal:
            reply = Reply(
                [_rcode_reply(record, refusal.rcode, self._opt(record, cookie))],
                (refusal.zone, refusal.rcode.name),
            )
        except Exception:
            log.exception("failed to answer a query from %s", peer or "?")
            reply = Reply(
                [_rcode_reply(record, Rcode.SERVFAIL, self._opt(record, cookie))],
                ("-", Rcode.SERVFAIL.name),
            )
        if signer is None:
            return reply
        if isinstance(reply.messages, (list, tuple)):
            return Reply(list(signer.sign(reply.messages)), reply.key)
        return Reply(signer.sign(reply.messages), reply.key)  # a transfer: signed as built

    def _opt(self, record: DNSRecord, cookie: CookieCheck = NO_COOKIE) -> EDNS0 | None:
        opts = [rr for rr in record.ar if rr.rtype == TYPE_OPT]
        return self._edns(cookie) if len(opts) == 1 else None

    def _edns(self, cookie: CookieCheck) -> EDNS0:
        """Our OPT record, with the client's cookie and a fresh server cookie if it sent one."""
        options = [EDNSOption(OPTION_COOKIE, cookie.answer)] if cookie.answer else None
        return EDNS0(udp_len=self.max_payload, opts=options)

    def _cookie(self, record: DNSRecord, peer: str) -> CookieCheck:
        """The query's COOKIE option checked; FORMERR for two of them or a bad length."""
        opts = [rr for rr in record.ar if rr.rtype == TYPE_OPT]
        if len(opts) != 1 or self.cookies is None or not isinstance(opts[0].rdata, list):
            return NO_COOKIE
        found = [option for option in opts[0].rdata if option.code == OPTION_COOKIE]
        if not found:
            return NO_COOKIE
        if len(found) > 1:
            raise _Refusal(Rcode.FORMERR)
        try:
            return self.cookies.check(bytes(found[0].data), peer)
        except MalformedCookie:
            raise _Refusal(Rcode.FORMERR) from None

    def _respond(
        self,
        record: DNSRecord,
        *,
        tcp: bool,
        peer: str,
        signed: bool,
        cookie: CookieCheck = NO_COOKIE,
    ) -> Reply:
        header = record.header
        if header.opcode != Opcode.QUERY:
            raise _Refusal(Rcode.NOTIMP)
        if len(record.questions) != 1:
            raise _Refusal(Rcode.FORMERR)
        opts = [rr for rr in record.ar if rr.rtype == TYPE_OPT]
        if len(opts) > 1 or (opts and opts[0].rname.label != ()):
            raise _Refusal(Rcode.FORMERR)
        limit = 512
        if opts:
            if (opts[0].ttl >> 16) & 0xFF:
                return Reply([_badvers(record, self.max_payload)], ("-", Rcode.BADVERS.name))
            limit = min(max(opts[0].rclass, 512), self.max_payload)
        question = record.q
        if question.qclass != RecordClass.IN:
            raise _Refusal(Rcode.REFUSED)
        labels = tuple(label.lower() for label in question.qname.label)
        found = self.table.match(labels)
        if found is None:
            raise _Refusal(Rcode.REFUSED)
        zone, below = found
        if zone.index is None:
            raise _Refusal(Rcode.SERVFAIL, zone.name)
        if question.qtype in (TYPE_AXFR, TYPE_IXFR):
            if below or not self.may_transfer(peer) or (self.keys and not signed):
                raise _Refusal(Rcode.REFUSED, zone.name)
            if not tcp:
                if question.qtype == TYPE_AXFR:
                    raise _Refusal(Rcode.REFUSED, zone.name)
                # RFC 1995 §2: over UDP, the current SOA alone; a client behind retries on TCP.
                return Reply([transfer.up_to_date(record, zone)], (zone.name, "NOERROR"))
            return self._transfer(record, zone, peer)
        decision = self.access.decide(zone.name, labels, below, peer)
        if decision.refuse:
            raise _Refusal(Rcode.REFUSED, zone.name)
        below = decision.below  # a key's label, taken out, makes KEY.<zone> the apex

        reply = DNSRecord(
            DNSHeader(id=header.id, qr=1, aa=1, rd=header.rd, cd=header.cd), q=question
        )
        apex = DNSLabel(question.qname.label[below:])
        if decision.verdict in (Verdict.DENIED, Verdict.OVER_QUOTA):
            rcode = self._fill_code(reply, zone, apex, decision, minimal=not tcp)
        else:
            rcode = self._fill(reply, zone, below, apex, minimal=not tcp)
        reply.header.rcode = rcode
        if opts:
            reply.add_ar(self._edns(cookie))
        data = bytes(reply.pack())
        if not tcp and len(data) > limit:
            data = _truncated(reply)
        return Reply([data], (zone.name, rcode.name))

    def _fill(
        self, reply: DNSRecord, zone: PublishedZone, below: int, apex: DNSLabel, *, minimal: bool
    ) -> Rcode:
        """Add the answer and authority records; returns the rcode.

        `minimal` (over UDP): ANY gets one RRset, the SOA at the apex and the A records below
        (RFC 8482 §4.1), as the hot path (`wire`) answers it.
        """
        question = reply.q
        qtype = question.qtype
        settings = zone.settings
        if below == 0:
            if qtype in (RecordType.SOA, TYPE_ANY):
                reply.add_answer(_soa(zone, apex))
            if qtype == RecordType.NS or (qtype == TYPE_ANY and not minimal):
                for ns in settings.ns:
                    reply.add_answer(RR(apex, RecordType.NS, ttl=settings.ttl, rdata=NS(ns + ".")))
            if not reply.rr:
                reply.add_auth(_soa(zone, apex))
            return Rcode.NOERROR
        assert zone.index is not None
        labels = tuple(label.lower() for label in question.qname.label[:below])
        found = look_up(zone.index, labels)
        if found.state == NameState.LISTED:
            if qtype in (RecordType.A, TYPE_ANY):
                codes = dict.fromkeys(value.code for value in found.values)
                for code in codes:
                    reply.add_answer(RR(question.qname, RecordType.A, ttl=zone.ttl, rdata=A(code)))
            if qtype == RecordType.TXT or (qtype == TYPE_ANY and not minimal):
                text = address_text(found.family, found.address)
                texts = dict.fromkeys(
                    render_txt(value.txt, text) for value in found.values if value.txt is not None
                )
                for rendered in texts:
                    strings = txt_strings(rendered)
                    reply.add_answer(
                        RR(question.qname, RecordType.TXT, ttl=zone.ttl, rdata=TXT(strings))
                    )
        if not reply.rr:
            reply.add_auth(_soa(zone, apex))
        return Rcode.NXDOMAIN if found.state == NameState.NXDOMAIN else Rcode.NOERROR

    def _fill_code(
        self,
        reply: DNSRecord,
        zone: PublishedZone,
        apex: DNSLabel,
        decision: Decision,
        *,
        minimal: bool,
    ) -> Rcode:
        """The answer that tells the client why it gets no listing data (RFC 5782 style):
        A 127.255.255.254 (denied) or 127.255.255.255 (over quota) and a TXT saying why."""
        question = reply.q
        qtype = question.qtype
        code = OVER_QUOTA_CODE if decision.verdict == Verdict.OVER_QUOTA else DENIED_CODE
        if qtype in (RecordType.A, TYPE_ANY):
            reply.add_answer(RR(question.qname, RecordType.A, ttl=_CODE_TTL, rdata=A(code)))
        if qtype == RecordType.TXT or (qtype == TYPE_ANY and not minimal):
            strings = txt_strings(self.access.explain(zone.name, decision.verdict))
            reply.add_answer(RR(question.qname, RecordType.TXT, ttl=_CODE_TTL, rdata=TXT(strings)))
        if not reply.rr:
            reply.add_auth(_soa(zone, apex))
        return Rcode.NOERROR

    def _transfer(self, record: DNSRecord, zone: PublishedZone, peer: str) -> Reply:
        assert zone.index is not None
        client_serial = _ixfr_serial(record) if record.q.qtype == TYPE_IXFR else None
        since = None
        if client_serial is not None and self.records is None:
            since = transfer.changed_since(zone, client_serial)
        if client_serial is not None and not _serial_newer(zone.serial, client_serial):
            # RFC 1995 §4: the client is up to date: the current SOA alone.
            messages: Iterable[bytes] = [transfer.up_to_date(record, zone)]
            log.debug("zone %s: %s is up to date at serial %d", zone.name, peer, zone.serial)
        elif since is not None:
            old, networks = since
            messages = transfer.ixfr_messages(record, zone, old, networks)
            log.info(
                "zone %s: serials %d to %d (%d networks changed) sent to %s as IXFR",
                zone.name,
                old.serial,
                zone.serial,
                len(networks),
                peer,
            )
        else:
            if self.records is None:
                messages = transfer.zone_axfr(record, zone)
            else:
                records = self.records(zone.index, zone.settings)
                messages = transfer.axfr_messages(record, zone, records)
            log.info("zone %s (serial %d) transferred to %s", zone.name, zone.serial, peer)
        return Reply(messages, (zone.name, "NOERROR"))


def _parse(packet: bytes) -> DNSRecord:
    """Parse a whole message; trailing bytes after the last record are an error."""
    buffer = DNSBuffer(packet)
    header = DNSHeader.parse(buffer)
    questions = [DNSQuestion.parse(buffer) for _ in range(header.q)]
    answers = [RR.parse(buffer) for _ in range(header.a)]
    authority = [RR.parse(buffer) for _ in range(header.auth)]
    additional = [RR.parse(buffer) for _ in range(header.ar)]
    if buffer.offset != len(packet):
        raise ValueError("trailing bytes after the last record")
    return DNSRecord(header, questions, answers, auth=authority, ar=additional)


def _soa(zone: PublishedZone, apex: DNSLabel) -> RR:
    settings = zone.settings
    times = (zone.serial, settings.refresh, settings.retry, settings.expire, settings.negative_ttl)
    rdata = SOA(settings.ns[0] + ".", settings.hostmaster + ".", times)
    return RR(apex, RecordType.SOA, ttl=settings.negative_ttl, rdata=rdata)


def _header_only(packet: bytes, rcode: Rcode) -> bytes:
    """A header-only reply (the question could not be read): id, opcode and RD kept."""
    flags = 0x8000 | (packet[2] & 0x79) << 8 | rcode
    return packet[:2] + struct.pack(">HHHHH", flags, 0, 0, 0, 0)


def _rcode_reply(record: DNSRecord, rcode: Rcode, opt: EDNS0 | None) -> bytes:
    header = record.header
    reply = DNSRecord(
        DNSHeader(
            id=header.id, qr=1, opcode=header.opcode, rd=header.rd, cd=header.cd, rcode=rcode
        ),
        q=record.q if len(record.questions) == 1 else None,
    )
    if len(record.questions) != 1:
        reply.questions = []
    if opt is not None:
        reply.add_ar(opt)
    data = bytes(reply.pack())
    return data


def _badvers(record: DNSRecord, max_payload: int) -> bytes:
    header = record.header
    reply = DNSRecord(DNSHeader(id=header.id, qr=1, rd=header.rd, cd=header.cd), q=record.q)
    # BADVERS is 16: its upper 8 bits (1) go in the OPT record, its lower 4 (0) in the header
    reply.add_ar(EDNS0(udp_len=max_payload, ext_rcode=Rcode.BADVERS >> 4))
    data = bytes(reply.pack())
    return data


def _badcookie(record: DNSRecord, opt: EDNS0 | None) -> bytes:
    """BADCOOKIE (23: 1 in the OPT record's upper bits, 7 in the header) with a fresh cookie."""
    header = record.header
    reply = DNSRecord(
        DNSHeader(id=header.id, qr=1, rd=header.rd, cd=header.cd, rcode=Rcode.BADCOOKIE & 0xF),
        q=record.q,
    )
    if opt is not None:
        opt.ttl |= (Rcode.BADCOOKIE >> 4) << 24
        reply.add_ar(opt)
    return bytes(reply.pack())


def _truncated(reply: DNSRecord) -> bytes:
    """The reply cut to its question (and OPT), with TC set: the client retries over TCP."""
    short = DNSRecord(DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap), q=reply.q)
    short.header.tc = 1
    for rr in reply.ar:
        short.add_ar(rr)
    data = bytes(short.pack())
    return data


def _ixfr_serial(record: DNSRecord) -> int | None:
    for rr in record.auth:
        if rr.rtype == RecordType.SOA:
            return int(rr.rdata.times[0])
    return None


def _serial_newer(ours: int, theirs: int) -> bool:
    """RFC 1982 serial number arithmetic: whether `ours` is after `theirs`."""
    difference = (ours - theirs) % 2**32
    return 0 < difference < 2**31
