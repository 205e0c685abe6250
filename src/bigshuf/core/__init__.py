"""The two-pass algorithm: memory plan, named random streams, records in bytes, scatter, gather, fingerprints, resume state, and the driver."""
