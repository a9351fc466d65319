"""From a reply's text to speech and frames: sentences, speech and the frame timeline."""
