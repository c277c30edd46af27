"""The human pages: server-rendered HTML for people, beside the REST API."""
