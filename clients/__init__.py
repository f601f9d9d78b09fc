"""Client tools: the `cofab` CLI (clients.cli) and the Python SDK (clients.sdk)."""
