"""The inner loops that adapt a model to one listener's support song (SGD steps, the ridge refit) and the recipe they follow."""
