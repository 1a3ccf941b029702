"""Train the depth network from a YAML recipe.

Examples:
  monodepth train --config training/configs/synthetic_quick.yaml
  monodepth train --config training/configs/kitti_cityscapes.yaml data.depth.root=/data/kitti
  monodepth train --config run/config.yaml --resume run/last.pt
  torchrun --nproc_per_node 4 -m monodepth_ros.training.cli --config ...   (multi-GPU)

Overrides are dotted keys with YAML values (optim.lr=5e-4 data.batch_size=4). Each run
writes its resolved config.yaml, last.pt (training state), model.pt (final model for
`monodepth export`) and TensorBoard logs into output_dir.
"""

from __future__ import annotations

import argparse
import json
import logging

from monodepth_ros.options import positive_float

LOG = logging.getLogger(__name__)


LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--config', required=True, help='YAML recipe (training/configs/*.yaml)')
    parser.add_argument('overrides', nargs='*', metavar='KEY=VALUE',
                        help='config overrides, e.g. optim.lr=5e-4 data.batch_size=4')
    parser.add_argument('--output-dir', help='where checkpoints and logs go (output_dir)')
    parser.add_argument('--resume', help='continue exactly from a last.pt checkpoint')
    parser.add_argument('--max-minutes', type=positive_float,
                        help='time budget in minutes (> 0); stops with a checkpoint when '
                        'reached')


def run(args) -> int:
    import torch

    from monodepth_ros.training.config import load_config
    from monodepth_ros.training.datasets import build_datasets
    from monodepth_ros.training.trainer import Trainer, distributed_context

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f'output_dir={args.output_dir}')
    if args.max_minutes is not None:
        overrides.append(f'max_minutes={args.max_minutes}')
    config = load_config(args.config, overrides)
    rank, world_size, local_rank = distributed_context()
    if world_size > 1:
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
        torch.distributed.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            config.device = f'cuda:{local_rank}'
    try:
        datasets = build_datasets(config)
        trainer = Trainer(config, datasets, resume=args.resume, rank=rank,
                          world_size=world_size, show_progress=not args.no_progress)
        metrics = trainer.run()
    finally:
        if world_size > 1:
            torch.distributed.destroy_process_group()
    if rank == 0:
        summary = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
        print(f'trained {trainer.step} steps; model: {trainer.output_dir / "model.pt"}')
        if summary:
            print('validation: ' + json.dumps(summary))
    return 0


def main(argv=None) -> int:
    """Entry point for ``torchrun -m monodepth_ros.training.cli``."""
    import sys

    from monodepth_ros.command import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command('train', sys.modules[__name__], argv)


if __name__ == '__main__':
    raise SystemExit(main())
