"""Multi-company design reviews: requests, decisions and the progress their workflow reports."""

from services.design.reviews.api import ReviewServicer
from services.design.reviews.application import Progress, ProgressKind, ReviewApplication
from services.design.reviews.domain import (
    Decision,
    OnNewRevision,
    Outcome,
    PolicyKind,
    QuorumPolicy,
    Review,
    ReviewState,
    verdict,
)

__all__ = [
    "Decision",
    "OnNewRevision",
    "Outcome",
    "PolicyKind",
    "Progress",
    "ProgressKind",
    "QuorumPolicy",
    "Review",
    "ReviewApplication",
    "ReviewServicer",
    "ReviewState",
    "verdict",
]
