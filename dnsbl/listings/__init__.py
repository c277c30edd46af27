"""dnsbl/listings"""
