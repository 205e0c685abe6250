"""The two-pass algorithm: memory plan, random streams, scatter, gather, fingerprints, resume state."""
