"""Predicting curves: model loading, whole songs and files of any length, the batch size that pays."""
