"""Learning rules as plain PyTorch: no Flower or Ray imports anywhere in this package."""
