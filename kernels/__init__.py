"""Compiled ops for the arithmetic-level techniques (reference, custom op, fast paths). Empty for now."""
