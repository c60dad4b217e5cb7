"""Text-to-SQL items: Spider/BIRD loaders, the embedded demo corpus, difficulty."""
