"""api/views"""
