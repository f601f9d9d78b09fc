"""Python SDK: authenticated gRPC stubs for cofab's services.

with connect(token=os.environ["COFAB_TOKEN"]) as cofab:
    project = cofab.projects.CreateProject(CreateProjectRequest(...))
"""

from clients.sdk.client import Cofab, TokenInterceptor, connect, open_channel

__all__ = ["Cofab", "TokenInterceptor", "connect", "open_channel"]
