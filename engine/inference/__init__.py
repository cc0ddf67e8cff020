"""Inference: device and precision, the classifier, Grad-CAM, evaluation on labelled images, result files, and
the compiled CPU backends (`backends`). `analysis`, `closed_form`, `overlays` and `decode_ahead` are torch-free,
so a model converted for a compiled backend classifies and draws heat-maps before PyTorch loads."""
