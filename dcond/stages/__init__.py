"""One module per pipeline stage: a typed config and a plain function that writes an artifact."""
