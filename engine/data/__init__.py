"""Images and datasets: the one image loader, decoding on the device, folder scans and splits, the training cache."""
