"""The SQL layer: sandboxed execution, schemas, pipe -> SQLite translation, result comparison, GoogleSQL check, types."""
