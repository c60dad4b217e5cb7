"""Files on disk: atomic writes, JSONL, manifests and the cache root."""
