"""The authoritative DNS server of the blocklist zones.

`query` reads a query name as an address or address prefix, `zones` holds each zone's index
with the byte templates of its answers, `wire` is the hot path (slices bytes, no dnslib),
`answers` the general path through dnslib (also the hot path's oracle), `transfer` builds
AXFR responses and sends NOTIFY, and `server` is the only module that does I/O. Nothing here
touches the database: the zone loader calls `DnsServer.publish` with each new index.
"""
