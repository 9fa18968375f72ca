"""Make deployable artifacts from the checkpoints the product uses: ONNX (fp32 / fp16 / int8) and TensorRT
engines, each with a manifest and a parity check against PyTorch. `reasonseg export --list` prints the
table of formats (`reasonseg_export.formats.FORMATS`); the runtime only loads what this writes."""
