#!/bin/sh
# An rbldnsd mirror: export the zone and ship it; rbldnsd reloads a file that changes. Run it
# from cron or a systemd timer. The file's header says how the mirror loads it, e.g.
#   rbldnsd -r /var/lib/rbldnsd ... bl.example.org:combined:bl.example.org.rbldnsd
# (combined for a zone of several categories or both families; else ip4trie or ip6trie).
set -eu
CONFIG=${DNSBL_CONFIG:-/etc/dnsbl/dnsbl.toml}
ZONE=${ZONE:-bl.example.org}
EXPORT=${EXPORT:-/var/lib/dnsbl/$ZONE.rbldnsd}
MIRROR=${MIRROR:-mirror.example.net:/var/lib/rbldnsd/}
# Written aside and renamed: the mirror never ships (nor rbldnsd reads) half a file.
dnsbl --config "$CONFIG" export "$ZONE" --format rbldnsd -o "$EXPORT.new"
mv "$EXPORT.new" "$EXPORT"
rsync -a "$EXPORT" "$MIRROR"
