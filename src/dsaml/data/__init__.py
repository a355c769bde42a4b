"""Datasets as the model meets them: dataset folders, annotation files, songs aligned with their labels, annotator tasks, batches."""
