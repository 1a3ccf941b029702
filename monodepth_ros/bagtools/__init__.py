"""bagtools."""
