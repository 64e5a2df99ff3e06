"""Chapter 2: working with text data (tokenizers, the sliding-window dataset, embeddings)."""
