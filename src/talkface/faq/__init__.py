"""The FAQ semantic cache: hot questions answered from a file, with no LLM call."""

from talkface.faq.base import Embedder, FAQEntry, FAQMatch, FAQSettings, load_faq_file
from talkface.faq.matcher import FAQMatcher, FAQScores
from talkface.faq.service import (
    ROUTE_HEADER,
    RecitedAnswer,
    Route,
    answer_from_faq,
    last_user_text,
    load_faq,
    load_faq_sync,
)

__all__ = [
    "ROUTE_HEADER",
    "Embedder",
    "FAQEntry",
    "FAQMatch",
    "FAQMatcher",
    "FAQScores",
    "FAQSettings",
    "RecitedAnswer",
    "Route",
    "answer_from_faq",
    "last_user_text",
    "load_faq",
    "load_faq_file",
    "load_faq_sync",
]
