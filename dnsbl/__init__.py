"""dnsbl: a private DNSBL server with ORBS-style relay testing."""

__version__ = "0.1.0"
