"""decode (bytes -> model) and encode (model -> bytes); canonical JSON."""
