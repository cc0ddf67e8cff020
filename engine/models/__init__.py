"""Models: the torch-free catalog, the registry, architectures, timm builders, weights, downloads, model files."""
