"""`python -m training fit --config training/configs/<experiment>.yaml`: LightningCLI over the modules and data
modules in this tree (class paths in the YAML), every Trainer option (strategy ddp / fsdp / deepspeed,
precision bf16-mixed, devices, num_nodes) from the same file or the command line."""
from __future__ import annotations

import sys


def main(args: list[str] | None = None) -> int | None:
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    from reasonseg.entry import INTERRUPTED, stop_requested

    try:
        LightningCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                     save_config_kwargs={"overwrite": True}, args=args, auto_configure_optimizers=False)
    except SystemExit as exc:  # Lightning ends a run stopped by Ctrl-C or SIGTERM with exit(1): report a stop
        if exc.code == 1 and stop_requested():
            return INTERRUPTED
        raise
    return None


def _load():
    import lightning.pytorch.cli  # noqa: F401  the heavy imports, while a Ctrl-C is only noted (reasonseg.entry)

    return main


if __name__ == "__main__":
    from reasonseg.entry import run_command

    sys.exit(run_command(_load))
