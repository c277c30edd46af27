"""dnsbl/node"""
