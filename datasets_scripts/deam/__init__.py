"""DEAM (official release layout) -> a dsaml dataset folder."""
