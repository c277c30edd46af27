"""The SMTP servers dnsbl runs itself: what the relay-test collector and the spam traps share."""
