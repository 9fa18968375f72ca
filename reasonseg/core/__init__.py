"""Bottom layer: errors, prompt/result types, image codec, atomic files, model cache, model loading, rendering, reports."""
