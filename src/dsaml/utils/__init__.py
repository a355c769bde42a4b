"""Plumbing every room uses: atomic files, user folders, the Hub, plots, the cache folder."""
