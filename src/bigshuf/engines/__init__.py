"""Where the passes run: in this process (local) or as Dask tasks."""
