"""What the MLLM modules (LENS stages, CORA) share about checkpoints: Lightning's checkpoint holds only the
tensors the stage trains (`self.trainable`, names under `model.`; the frozen billions stay in the starting
checkpoint), is completed from the starting weights on resume, and every save also writes the whole model in
its own layout to `hparams.out_dir`, where its pipeline (`--pipeline lens | cora`) and `export/` read it."""
from __future__ import annotations

from typing import Any


class TrainedTensorsCheckpoint:
    trainable: list[str]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trained = set(self.trainable)
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                    if k.removeprefix("model.") in trained}
        if self.hparams.out_dir and self.trainer.is_global_zero:
            self.model.save_pretrained(self.hparams.out_dir, processor=self.processor())

    def processor(self):  # noqa: ANN201
        """The starting checkpoint's processor, read once (every save writes it next to the model)."""
        if getattr(self, "_processor_cache", None) is None:
            from transformers import AutoProcessor

            self._processor_cache = AutoProcessor.from_pretrained(self.hparams.checkpoint, local_files_only=True)
        return self._processor_cache

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        full = self.state_dict()
        full.update(checkpoint["state_dict"])
        checkpoint["state_dict"] = full
