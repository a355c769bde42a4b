"""What every builder shares: the row schema, the folder writer, configs, cards, drop reports, splits."""
