"""The `cofab` command line (clients.cli.main)."""
