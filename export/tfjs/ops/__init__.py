"""ONNX converters for TF ops, one module per op family; `convert.CONVERTERS` merges their tables."""
