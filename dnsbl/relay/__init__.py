"""dnsbl/relay"""
