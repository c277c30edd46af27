"""dnsbl/rbldnsd"""
