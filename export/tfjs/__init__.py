"""The TF.js converter: TensorFlow.js graph models (model.json + weight shards) -> ONNX, without TensorFlow.

`graph` reads the model, `attributes` decodes node attributes, `builder` emits ONNX with layout tracking,
`ops/` holds one converter per TF op family, `convert` assembles the graph (and is a small CLI), `reference`
runs the TF.js graph in TF semantics for the parity check, and `export` is the format runner
(`reasonseg export centernet | person-selfie`).
"""
