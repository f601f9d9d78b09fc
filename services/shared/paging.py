"""AIP-158 pagination: page_size limits, opaque page tokens bound to the query they came from.

A page token is sealed with the server key (services.shared.keys) and bound to the caller's
organization and the list call (its `query`, e.g. the parent): it hides the position it carries,
and a forged, altered or foreign token is InvalidArgument, never a database error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from services.shared.errors import InvalidArgument
from services.shared.keys import current_keys, seal, unseal
from services.shared.server import current_principal

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_PURPOSE = "page-token"


def _binding(query: str) -> str:
    return f"{current_principal().organization_id}\n{query}"


@dataclass(frozen=True)
class Page:
    limit: int
    after_seq: int
    query: str

    def next_token(self, last_seq_of_page: int | None, fetched: int) -> str:
        """Token for the next page, or "" when this page was the last one.

        Callers fetch `limit + 1` rows to learn whether another page exists."""
        if last_seq_of_page is None or fetched <= self.limit:
            return ""
        return seal(current_keys().sealing, _PURPOSE, _binding(self.query), last_seq_of_page)


def page(page_size: int, page_token: str, query: str) -> Page:
    """Validates page_size and page_token; `query` identifies the list call (e.g. its parent),
    so a token from one list (or organization) cannot be replayed against another."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not page_token:
        return Page(limit, 0, query)
    after = unseal(current_keys().sealing, _PURPOSE, _binding(query), page_token)
    # Positions are database sequence numbers, which stay below 2**63.
    if after is None or after >= 2**63:
        raise InvalidArgument.field("page_token", "is not a token returned by this list call")
    return Page(limit, after, query)


T = TypeVar("T")


@dataclass(frozen=True)
class Listed(Generic[T]):
    """One page of a list call."""

    items: list[T]
    next_page_token: str


def page_of(page: Page, rows: list[tuple[int, T]]) -> Listed[T]:
    """Cuts `limit + 1` fetched (seq, item) rows to one page and its next-page token."""
    items = rows[: page.limit]
    last_seq = items[-1][0] if items else None
    return Listed([item for _, item in items], page.next_token(last_seq, len(rows)))
