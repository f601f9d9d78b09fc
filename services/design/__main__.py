"""`python -m services.design`: runs the design service until SIGTERM."""

from services.design.app import build_server
from services.shared.server import run_service

if __name__ == "__main__":
    run_service("design", build_server)
