"""Animator backends by name. Add a backend: one module, one line here."""

from __future__ import annotations

from talkface.registry import BackendEntry

ANIMATOR_BACKENDS: dict[str, BackendEntry] = {
    "landmark-warp": BackendEntry(
        "talkface.face.landmark_warp:LandmarkWarpAnimator",
        "face",
        "2D warp of the portrait along its face landmarks; CPU, ~1-3 ms per frame",
    ),
}
