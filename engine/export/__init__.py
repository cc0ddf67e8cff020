"""Export to ONNX and .pt2 with the preprocessing inside, and the parity check against Cardinal's classifier."""
