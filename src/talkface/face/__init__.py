"""The face: avatar preparation, landmarks and the animators that lip-sync it."""
