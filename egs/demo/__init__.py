"""Built-in demo corpus: two-speaker mixtures of eSpeak NG voices (see README.md)."""
