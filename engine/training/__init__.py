"""Training: the recipe, the events a run yields, the one epoch loop, Fast/Full modes, starting points, torchrun."""
