"""LiteSAM: TinyViT image encoder + SAM prompt encoder + SAM mask decoder.

Our own implementation of the LiteMedSAM architecture (TinyViT-5M encoder at 256x256 input, 64x64x256
image embedding, SAM prompt encoder and two-way-transformer mask decoder). Module names follow the
original TinyViT / segment-anything layout so that state-dict keys match ``lite_medsam.pth`` exactly.

One definition is shared by the segmenters, training and ONNX export:

* ``configuration.LiteSamConfig``      architecture sizes (defaults: LiteMedSAM)
* ``modeling.build_lite_sam(cfg)``     -> randomly initialised ``LiteSam`` (parts: ``image_encoder``,
  ``prompt_encoder``, ``mask_decoder``, ``layers``)
* ``convert.convert_checkpoint(pth, out)`` -> strict key/shape check of a torch checkpoint, written as safetensors
* ``convert.save_lite_sam(model, out)``    -> safetensors (atomic)
* ``convert.load_lite_sam(weights, cfg)``  -> ``LiteSam`` in eval mode

Prompt convention (the SAM ONNX convention, used by both the torch and the ONNX path): sparse prompts are
points in *model input* pixel coordinates (``[0, img_size)``) with labels 1 = positive, 0 = negative,
2 / 3 = top-left / bottom-right box corner and -1 = padding ("not a point").
"""
