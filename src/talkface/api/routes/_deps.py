"""Who may call a route, and whether the models must be loaded, as annotated parameters::

    async def endpoint(principal: KeyHolder, state: Ready) -> ...
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from talkface.api.auth import Principal
from talkface.api.deps import require_access, require_key, require_ready
from talkface.api.state import ServerState

KeyHolder = Annotated[Principal, Depends(require_key)]
"""An API key is needed (programs)."""
AnyHolder = Annotated[Principal, Depends(require_access)]
"""An API key or a session token (what a browser page has)."""
Ready = Annotated[ServerState, Depends(require_ready)]
"""The models must be loaded; until then, 503 with Retry-After."""
