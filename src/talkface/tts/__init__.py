"""Speech synthesis: the TTS contract, its backends and the voices."""
