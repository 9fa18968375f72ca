"""SAM 3: the tracker (SAM2-style prompt encoder, decoder and memory over SAM 3's ViT) on torch."""
