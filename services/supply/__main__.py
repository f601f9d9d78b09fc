"""`python -m services.supply`: runs the supply service until SIGTERM."""

from services.shared.server import run_service
from services.supply.app import build_server

if __name__ == "__main__":
    run_service("supply", build_server)
