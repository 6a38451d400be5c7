"""The synthetic shop: generator, landing, and its ground-truth oracle."""
