"""Composition root of the design service: builds every dependency and the gRPC server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import Engine

from cofab.design.v1 import (
    comment_pb2,
    comment_pb2_grpc,
    design_pb2,
    design_pb2_grpc,
    review_pb2,
    review_pb2_grpc,
)
from cofab.identity.v1 import identity_pb2, identity_pb2_grpc
from services.design.adapters.blobstore import FileBlobStore
from services.design.adapters.geometry import EngineChecks
from services.design.api import DesignServicer, ProjectServicer
from services.design.application import DesignApplication
from services.design.comments import CommentApplication, CommentServicer
from services.design.diffs import DiffApplication, DiffJobs, MergeJobs
from services.design.domain.ports import GeometryChecks
from services.design.processing import RevisionProcessor
from services.design.reviews import ReviewApplication, ReviewServicer
from services.design.revisions import RevisionApplication
from services.shared import audit
from services.shared.config import Settings
from services.shared.db import utcnow
from services.shared.feed import feed_registration
from services.shared.identity_api import TokenAuthenticator, identity_registration
from services.shared.keys import server_keys
from services.shared.server import BuiltServer, ServiceRegistration, create_server, read_tls

# gRPC messages of a push are chunks of at most 1 MiB (clients.sdk); leave room for the header.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass
class RevisionDeps:
    blobs: FileBlobStore
    app: RevisionApplication
    processor: RevisionProcessor
    diffs: DiffApplication


@dataclass
class DesignDeps:
    engine: Engine
    authenticator: TokenAuthenticator
    app: DesignApplication
    # Built from the settings by build_server when not given.
    revisions: RevisionDeps | None = None


def revision_deps(
    settings: Settings, engine: Engine, geometry: GeometryChecks | None = None
) -> RevisionDeps:
    """The blob store, the revision use cases and the processor, from the settings."""
    blobs = FileBlobStore(settings.blob_root)
    blobs.sweep_temporary()
    processor = RevisionProcessor(
        engine,
        blobs,
        settings.state_dir / "ingest",
        workers=settings.ingest_workers,
        attempts=settings.ingest_attempts,
        lease_seconds=settings.ingest_lease_seconds,
        jobs=(DiffJobs(engine, blobs, utcnow), MergeJobs(engine, blobs, utcnow)),
    )
    app = RevisionApplication(
        engine,
        geometry or EngineChecks(),
        settings.max_upload_bytes,
        on_pushed=processor.wake,
    )
    return RevisionDeps(blobs, app, processor, DiffApplication(engine, on_queued=processor.wake))


def bootstrap(settings: Settings) -> DesignDeps:
    engine = audit.audited_engine(settings)
    revisions = revision_deps(settings, engine)
    return DesignDeps(
        engine=engine,
        authenticator=TokenAuthenticator(engine, settings.auth_cache_seconds),
        app=DesignApplication(engine, geometry=revisions.app.geometry),
        revisions=revisions,
    )


def registrations(deps: DesignDeps, revisions: RevisionDeps) -> list[ServiceRegistration]:
    projects = ProjectServicer(deps.app)
    designs = DesignServicer(deps.app, revisions.app, revisions.blobs, revisions.diffs)
    reviews = ReviewServicer(ReviewApplication(deps.engine, deps.app.clock))
    comments = CommentServicer(CommentApplication(deps.engine, deps.app.clock))
    return [
        identity_registration(),
        ServiceRegistration(
            identity_pb2.DESCRIPTOR.services_by_name["ProjectService"].full_name,
            lambda s: identity_pb2_grpc.add_ProjectServiceServicer_to_server(projects, s),
        ),
        ServiceRegistration(
            design_pb2.DESCRIPTOR.services_by_name["DesignService"].full_name,
            lambda s: design_pb2_grpc.add_DesignServiceServicer_to_server(designs, s),
        ),
        ServiceRegistration(
            review_pb2.DESCRIPTOR.services_by_name["ReviewService"].full_name,
            lambda s: review_pb2_grpc.add_ReviewServiceServicer_to_server(reviews, s),
        ),
        ServiceRegistration(
            comment_pb2.DESCRIPTOR.services_by_name["CommentService"].full_name,
            lambda s: comment_pb2_grpc.add_CommentServiceServicer_to_server(comments, s),
        ),
        feed_registration(deps.engine),
    ]


@dataclass
class DesignServer(BuiltServer):
    """The gRPC server together with the revision processor: they start and stop together."""

    processor: RevisionProcessor | None = None

    async def start(self) -> None:
        await super().start()
        if self.processor is not None:
            self.processor.start()

    async def stop(self, grace: float = 5.0) -> None:
        await super().stop(grace)
        if self.processor is not None:
            await asyncio.to_thread(self.processor.stop)


def build_server(
    settings: Settings, deps: DesignDeps | None = None, listen: str = ""
) -> BuiltServer:
    """The design service's server, not yet started (tests pass listen="127.0.0.1:0")."""
    deps = deps or bootstrap(settings)
    if deps.revisions is None:
        deps.revisions = revision_deps(settings, deps.engine)
    built = create_server(
        listen or settings.design_listen,
        registrations(deps, deps.revisions),
        deps.authenticator,
        server_keys(settings),
        tls=read_tls(settings.tls_cert_file, settings.tls_key_file),
        max_message_bytes=MAX_MESSAGE_BYTES,
        auditor=audit.CallAudit(deps.engine),
    )
    return DesignServer(
        built.server, built.port, built.health, built.service_names, deps.revisions.processor
    )
