"""One pagination loop for every AWS list call: DRS's ``nextToken``, EC2's
``NextToken`` and DynamoDB's ``LastEvaluatedKey`` alike.

A token that comes back twice, or a listing with no end, is a service bug; it
raises :class:`PagingError` instead of looping forever.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

MAX_PAGES = 1000


class PagingError(Exception):
    """A paged listing that repeats a token or never ends."""


async def paginate(
    fetch: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    request: Mapping[str, Any],
    *,
    what: str,
    resume_with: str = "nextToken",
    resume_from: str = "nextToken",
) -> AsyncIterator[dict[str, Any]]:
    """Yield every page of ``fetch(request)``, passing each page's ``resume_from`` field
    back as the next request's ``resume_with`` parameter."""
    seen: set[str] = set()
    params = dict(request)
    for _ in range(MAX_PAGES):
        page = await fetch(params)
        yield page
        token = page.get(resume_from)
        if not token:
            return
        marker = json.dumps(token, sort_keys=True, default=str)
        if marker in seen:
            raise PagingError(f"{what}: the service repeated a page token")
        seen.add(marker)
        params = {**request, resume_with: token}
    raise PagingError(f"{what}: more than {MAX_PAGES} pages")
