"""Access keys on the database side: issued, listed, revoked, and their use counted.

The DNS side (`dnsbl.dns.access`) only ever sees the plain data `active_keys` gives; a DNS
node's key follower (`dnsbl.node.access_keys`) moves it there and the use back.
"""
