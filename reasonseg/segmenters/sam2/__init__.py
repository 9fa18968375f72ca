"""SAM2: graph contracts, PyTorch runner, onnxruntime runner with explicit memory."""
