"""The spoken questions the conversation benchmarks ask (one list, so their numbers compare)."""

QUESTIONS = [
    "What can you do for me?",
    "What time does the store open?",
    "Can you recommend a good book?",
    "How is the weather today?",
    "Where is the nearest train station?",
    "Tell me something interesting.",
    "How do I reset my password?",
    "What is your name?",
    "Can you help me with my order?",
    "What should I eat for dinner?",
]
