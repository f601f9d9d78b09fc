"""AIP-158 pagination: page_size limits, opaque page tokens bound to the query they came from."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.shared.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


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
        raw = json.dumps({"a": last_seq_of_page, "q": _digest(self.query)}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _digest(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def page(page_size: int, page_token: str, query: str) -> Page:
    """Validates page_size and page_token; `query` identifies the list call (e.g. its parent),
    so a token from one list cannot be replayed against another."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    limit = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if not page_token:
        return Page(limit, 0, query)
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        after = int(decoded["a"])
        if decoded["q"] != _digest(query):
            raise ValueError("token of another query")
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.field(
            "page_token", "is not a token returned by this list call"
        ) from None
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
