"""Who may ask, and how much, on the database side: access keys issued, listed, revoked and
their use counted (`keys`); and the settings of access, rate limiting and cookies (`settings`).

The DNS side (`dnsbl.dns.access`) only ever sees the plain data `keys.active_keys` gives; a
DNS node's key follower (`dnsbl.node.access_keys`) moves it there and the use back.
"""
