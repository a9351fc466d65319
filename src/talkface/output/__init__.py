"""Getting the avatar out: the session outbox, the playout timeline and MP4 files."""
