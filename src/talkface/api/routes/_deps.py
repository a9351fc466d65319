"""Who may call a route, and whether the models must be loaded, as annotated parameters::

    async def endpoint(principal: KeyHolder, state: Ready) -> ...
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from talkface.api.auth import Principal
from talkface.api.deps import require_access, require_key, require_ready
from talkface.api.state import ServerState
from talkface.errors import Overloaded
from talkface.services.jobs import RenderQueue

KeyHolder = Annotated[Principal, Depends(require_key)]
"""An API key is needed (programs)."""
AnyHolder = Annotated[Principal, Depends(require_access)]
"""An API key or a session token (what a browser page has)."""
Ready = Annotated[ServerState, Depends(require_ready)]
"""The models must be loaded; until then, 503 with Retry-After."""


def renders_of(request: Request) -> RenderQueue:
    """The server's render queue (it exists once the server has started)."""
    queue: RenderQueue | None = getattr(request.app.state, "renders", None)
    if queue is None:
        raise Overloaded("render jobs are not available yet: the server is starting",
                         retry_after_s=5.0)
    return queue
