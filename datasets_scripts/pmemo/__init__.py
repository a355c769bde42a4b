"""PMEmo2019 (official release layout) -> a dsaml dataset folder."""
