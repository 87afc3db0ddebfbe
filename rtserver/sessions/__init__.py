"""Where sessions live: the ``Store`` interface and the embedded store (per-session journal files)."""
