"""The agent: its five tools, prompts and the schema text it reads."""
