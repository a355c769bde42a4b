"""The synthetic PDMER set: generated songs and simulated listeners whose perception is known."""
