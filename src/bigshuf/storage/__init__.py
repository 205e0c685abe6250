"""Bytes in and out: codecs, sources, sinks and their commit, temp space, URLs, write-behind, safe files."""
