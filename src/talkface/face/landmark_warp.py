"""The default animator: landmark-driven 2D warping of the portrait, on the CPU.

Avatar preparation (once per portrait, cached): face detection and 468 landmarks from
MediaPipe's pretrained models, then a rig of deformation bases (see :mod:`.rig`). Per
frame: audio → mouth controls (:mod:`.mouth`), seed + time → blinks, head motion and
expression (:mod:`.motion`), controls → pixels (:mod:`.render`), about 1-3 ms per
512x512 frame on one core.
"""

from __future__ import annotations

import collections
import threading
from typing import Self

import numpy as np

from talkface.errors import BadInput
from talkface.face.avatar import AvatarStore, default_cache_dir
from talkface.face.base import (
    AnimationRequest,
    AnimatorBackend,
    AnimatorCapabilities,
    AnimatorSettings,
    frame_pts_ns,
)
from talkface.face.motion import blink_amount, expression, head_motion
from talkface.face.mouth import mouth_track
from talkface.face.render import FacePose, render_frame
from talkface.face.rig import FaceRig, build_rig

_MAX_RIGS_IN_MEMORY = 32


class LandmarkWarpAnimator(AnimatorBackend):
    """Animates a portrait by warping it along its own face landmarks."""

    name = "landmark-warp"
    capabilities = AnimatorCapabilities(batching=False, uses_phonemes=True, gpu=False)

    def __init__(self, settings: AnimatorSettings, store: AvatarStore) -> None:
        super().__init__(settings)
        self._store = store
        self._rigs: collections.OrderedDict[str, FaceRig] = collections.OrderedDict()
        self._rigs_lock = threading.Lock()

    @classmethod
    def load(cls, settings: AnimatorSettings) -> Self:
        """Load the face-mesh model for the warp (OpenCV on one thread; no GPU)."""
        import cv2

        from talkface.face.landmarks import face_mesh

        cv2.setNumThreads(1)  # one core per engine; threads fight on a small shared box
        face_mesh()  # load the landmark model now, not on the first portrait
        return cls(settings, AvatarStore(settings.cache_dir or default_cache_dir()))

    def _prepare_avatar(self, image: np.ndarray) -> str:
        avatar = self._store.prepare(image, self.settings.size_px, self.settings.framing)
        self._rig(avatar.avatar_id)
        return avatar.avatar_id

    def _rig(self, avatar_id: str) -> FaceRig:
        with self._rigs_lock:
            rig = self._rigs.get(avatar_id)
            if rig is not None:
                self._rigs.move_to_end(avatar_id)
                return rig
        avatar = self._store.get(avatar_id)
        if avatar is None:
            raise BadInput(f"unknown avatar {avatar_id!r}; upload or prepare the portrait first")
        rig = build_rig(avatar)
        with self._rigs_lock:
            self._rigs[avatar_id] = rig
            while len(self._rigs) > _MAX_RIGS_IN_MEMORY:
                self._rigs.popitem(last=False)
        return rig

    def _animate_batch(self, requests: list[AnimationRequest]) -> list[list[np.ndarray]]:
        return [self._animate(request) for request in requests]

    def _animate(self, request: AnimationRequest) -> list[np.ndarray]:
        rig = self._rig(request.avatar_id)
        settings = self.settings
        indices = np.arange(
            request.first_frame_index, request.first_frame_index + request.num_frames
        )
        times_ns = np.array([frame_pts_ns(int(i), request.fps) for i in indices], np.int64)
        times_s = times_ns / 1e9
        track = mouth_track(request.audio, request.audio_start_ns, times_ns, request.fps,
                            request.phonemes)
        blinks = blink_amount(request.seed, times_s, settings.blinks_per_min)
        roll, dx, dy, scale = head_motion(
            request.seed, times_s, track.level, rig.face_height_px, settings.head_motion
        )
        looks = expression(request.emotion, request.previous_emotion,
                           request.emotion_since_ns, times_ns, track.speaking)
        rest_open = rig.lips.rest_gap_px / rig.mouth_width_px
        opening = rest_open * (1.0 - track.speaking) + track.open * track.speaking
        frames = []
        for k in range(request.num_frames):
            pose = FacePose(
                mouth_open=float(opening[k]),
                lip_round=float(track.round[k]),
                lip_spread=float(track.spread[k]),
                smile=looks[k].smile,
                brow_raise=looks[k].brow_raise,
                brow_furrow=looks[k].brow_furrow,
                cheek_raise=looks[k].cheek_raise,
                eye_narrow=looks[k].eye_narrow,
                blink=float(blinks[k]),
                head_roll_rad=float(roll[k]),
                head_dx_px=float(dx[k]),
                head_dy_px=float(dy[k]),
                head_scale=float(scale[k]),
            )
            frames.append(render_frame(rig, pose))
        return frames
