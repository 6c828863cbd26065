"""oioi."""
