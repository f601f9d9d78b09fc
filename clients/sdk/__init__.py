"""Python SDK: authenticated gRPC stubs for cofab's services.

with connect(token=os.environ["COFAB_TOKEN"]) as cofab:
    project = cofab.projects.CreateProject(CreateProjectRequest(...))
"""

from clients.sdk.client import Cofab, TokenInterceptor, connect, open_channel
from clients.sdk.revisions import (
    download,
    download_diff,
    push_revision,
    wait_for,
    wait_for_diff,
    wait_for_merge,
)

__all__ = [
    "Cofab",
    "TokenInterceptor",
    "connect",
    "download",
    "download_diff",
    "open_channel",
    "push_revision",
    "wait_for",
    "wait_for_diff",
    "wait_for_merge",
]
