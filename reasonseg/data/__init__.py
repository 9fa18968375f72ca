"""Dataset readers in the formats their sources publish (RefCOCO family, ReasonSeg) and seeded
semi-supervised split lists. Each sample is a `ReferringSample`: image path, expressions, binary target
mask (255 = ignore where the source marks it) and box."""
from .referring import ReferringSample, read_reasonseg, read_refcoco, semi_supervised_split

__all__ = ["ReferringSample", "read_refcoco", "read_reasonseg", "semi_supervised_split"]
