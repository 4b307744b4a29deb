"""Small helpers shared across the package (no model, data or training code)."""
