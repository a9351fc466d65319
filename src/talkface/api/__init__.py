"""The HTTP and WebSocket server (FastAPI): routes, wire schemas, auth, limits, metrics."""
