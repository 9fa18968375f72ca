"""Dataset readers in the formats their sources publish (RefCOCO family, ReasonSeg) and seeded
semi-supervised split lists; Cityscapes (gtFine label ids -> train ids) and PanNuke (npy folds). Each referring sample is a `ReferringSample`: image path, expressions, binary target
mask (255 = ignore where the source marks it) and box."""
