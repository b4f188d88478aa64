"""Data: the interleaved sequence format (later: tokenizer, readers, mixtures)."""
