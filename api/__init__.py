"""The HTTP face of dnsbl: the REST API under /v1, health and metrics, and the human pages."""

from api.app import create_app

__all__ = ["create_app"]
