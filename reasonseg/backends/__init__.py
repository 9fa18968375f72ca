"""Graph runners: onnxruntime, OpenVINO, TensorRT, and the CPU features they depend on."""
