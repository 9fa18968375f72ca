"""Referring-segmentation validation every module logs the same way: `val/gIoU` (mean of per-sample IoU) and
`val/cIoU` (cumulative intersection over cumulative union), summed over DDP ranks before the division."""
from __future__ import annotations

import torch

from reasonseg.core.metrics import ReferringIoU


class ReferringValidation:
    val_iou: ReferringIoU

    def update_val_iou(self, logits: torch.Tensor, masks: torch.Tensor) -> None:
        """logits [B, H, W] (> 0 is foreground) against 0/1 masks of the same size."""
        if not hasattr(self, "val_iou"):
            self.val_iou = ReferringIoU()
        for m, t in zip((logits > 0).cpu().numpy(), masks.cpu().numpy()):
            self.val_iou.update(m, t == 1)

    def on_validation_epoch_end(self) -> None:
        v = getattr(self, "val_iou", ReferringIoU())
        stats = torch.tensor([v.intersection, v.union, sum(v.per_sample), len(v.per_sample)], dtype=torch.float64,
                             device=self.device)
        if self.trainer.world_size > 1:  # every rank saw a share: cIoU from summed areas, gIoU over all samples
            stats = self.all_gather(stats).reshape(-1, 4).sum(0)
        self.log_dict({"val/gIoU": float(stats[2] / stats[3].clamp(min=1)),
                       "val/cIoU": float(stats[0] / stats[1].clamp(min=1))}, prog_bar=True)
        self.val_iou = ReferringIoU()
