"""The ``talkface`` CLI commands, one module per command."""
