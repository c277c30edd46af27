"""api/pages"""
