"""`python -m training fit --config training/configs/<experiment>.yaml`: LightningCLI over the modules and data
modules in this tree (class paths in the YAML), every Trainer option (strategy ddp / fsdp / deepspeed,
precision bf16-mixed, devices, num_nodes) from the same file or the command line.

Every Trainer writes its checkpoints through `DigestCheckpointIO` (a sha256 beside each, checked on resume). A
wrong path or an unreadable checkpoint ends the run with one line and exit 2, as the other commands report
errors; a Ctrl-C or SIGTERM, however often it is repeated, with 130."""
from __future__ import annotations

import sys

INVALID = 2  # the CLI's exit code for a wrong setting or file (reasonseg.cli.main)


def _reason(exc: BaseException) -> BaseException | None:
    """The error meant for the user behind `exc` (ours, or Lightning's MisconfigurationException, e.g. a resumed
    run's max_epochs already reached), or None. jsonargparse wraps an error raised while it builds a module (a
    missing model dir) in its own ValueError: the cause chain still holds ours."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from reasonseg.core.errors import ReasonSegError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (ReasonSegError, MisconfigurationException)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def main(args: list[str] | None = None) -> int | None:
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    from reasonseg.core.errors import one_line
    from reasonseg.core.signals import INTERRUPTED, ignore_further_signals, stop_requested

    from .checkpoint_io import DigestCheckpointIO, check_resume

    class TrainingCLI(LightningCLI):
        def _parse_ckpt_path(self) -> None:  # LightningCLI torch.loads --ckpt_path first thing: check it before
            check_resume(self.config.get(self.config.get("subcommand") or "", {}).get("ckpt_path"))
            super()._parse_ckpt_path()

        def instantiate_trainer(self, **kwargs):  # noqa: ANN003, ANN202
            trainer = super().instantiate_trainer(**kwargs)
            trainer.strategy.checkpoint_io = DigestCheckpointIO(trainer.strategy.checkpoint_io)
            return trainer

    try:
        TrainingCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                    save_config_kwargs={"overwrite": True}, args=args, auto_configure_optimizers=False)
    except BaseException as exc:
        if stop_requested():
            # Lightning ends a run stopped by Ctrl-C or SIGTERM with exit(1), and a repeated signal lands in its
            # shutdown as another KeyboardInterrupt (or as the error of the C call it interrupted): report the
            # stop. From here on the process only exits, and Python restores the default handlers for that, so
            # a further signal would kill it (-15): ignore them.
            ignore_further_signals()
            return INTERRUPTED
        reason = _reason(exc) if isinstance(exc, Exception) else None
        if reason is None:
            raise
        print(f"training: error: {one_line(reason, 600)}", file=sys.stderr, flush=True)
        return INVALID
    return None


def _load():
    import lightning.pytorch.cli  # noqa: F401  the heavy imports, while a Ctrl-C is only noted (reasonseg.core.signals)

    return main


if __name__ == "__main__":
    from reasonseg.core.signals import run_command

    sys.exit(run_command(_load))
