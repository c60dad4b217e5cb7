"""pipesql: GoogleSQL pipe-syntax training data, fine-tuning and evaluation for code LLMs."""

__version__ = "0.1.0"
