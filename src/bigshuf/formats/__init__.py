"""Record formats, plugged into the core's driver: lines, Arrow/Parquet rows, JSON Lines; their registry and detection. Nothing below imports them."""
