"""Text on its way to the voice: language, normalisation, sentences and the text policy."""
