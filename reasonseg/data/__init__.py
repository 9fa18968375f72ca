"""Dataset readers in the formats their sources publish (RefCOCO family, ReasonSeg) and seeded
semi-supervised split lists; Cityscapes (gtFine label ids -> train ids) and PanNuke (npy folds). Each referring sample is a `ReferringSample`: image path, expressions, binary target
mask (255 = ignore where the source marks it) and box."""
from reasonseg.data.referring import ReferringSample, read_reasonseg, read_refcoco, semi_supervised_split
from reasonseg.data.semantic import SemanticSample, read_cityscapes, read_pannuke

__all__ = ["ReferringSample", "SemanticSample", "read_cityscapes", "read_pannuke", "read_refcoco", "read_reasonseg",
           "semi_supervised_split"]
