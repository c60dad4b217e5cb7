"""Models: loading weights and tokenizers, the chat template, generation backends."""
