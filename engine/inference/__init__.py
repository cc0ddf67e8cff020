"""Inference: device and precision, the classifier, Grad-CAM, evaluation on labelled images, result files."""
