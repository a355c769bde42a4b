"""Scoring personalization: the personalize-then-score protocol, its reference methods, scores and summaries."""
