"""dnsbl/index"""
