"""Speech recognition: the ASR contract, its backends and the streaming transcriber."""
