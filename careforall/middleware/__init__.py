"""ASGI middleware: request metrics, logs and traces; security headers and limits."""
