"""attnmel."""
