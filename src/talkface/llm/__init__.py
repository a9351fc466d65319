"""The language model: the LLM contract, its backends, memory, routing and reply guard."""
