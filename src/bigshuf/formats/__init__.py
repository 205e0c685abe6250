"""Record formats: lines (separator and record groups), Arrow/Parquet rows, JSON Lines, detection."""
