"""The HTTP face of dnsbl: the REST API under /v1, health and metrics, and the human pages.

`api.app.create_app` builds the application.
"""
