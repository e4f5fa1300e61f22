"""The NSA paper's detection model: network, metrics, MVTec-layout datasets and the training loop (needs torch)."""
