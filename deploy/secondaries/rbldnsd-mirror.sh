#!/bin/sh
# An rbldnsd mirror: export the zone and ship it; rbldnsd reloads files that change.
set -eu
dnsbl --config /etc/dnsbl/dnsbl.toml export bl.example.org --format rbldnsd -o /var/lib/dnsbl/bl.example.org.rbldnsd
rsync -a /var/lib/dnsbl/bl.example.org.rbldnsd mirror.example.net:/var/lib/rbldnsd/
