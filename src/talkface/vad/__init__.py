"""Voice activity detection: the VAD contract, its backends and the endpointer."""
