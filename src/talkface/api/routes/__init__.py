"""The HTTP routes, one module per area (health, OpenAI, renders, sessions, ...)."""
