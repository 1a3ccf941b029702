"""The training loop: two phases, conditional gradient flow, exact resume, DDP, time budget.

Phase 1 (seed 004): batches alternate between the depth source and the semantic source (when
one is configured). A depth batch is scored only by the depth-bin cross-entropy (plus the
log-L1 of the fused expectation, which is what trains the attention masks); a semantic batch
only by the semantic cross-entropy. The shared encoder/decoder gets gradients from both; each
head only from its own batches: the other head is not even computed (``heads=(kind,)``), so
its parameters get no gradient (``.grad`` stays None), AdamW leaves them untouched and its
BatchNorm statistics never see the other dataset's images.

Phase 2 (the last ``phase2_steps`` steps): regression fine-tuning of the depth output with
L1 + scale-invariant log loss (lambda 0.85) + the bin cross-entropy.

Data order and augmentation are a pure function of (seed, batches drawn so far): the sampler
passes ``epoch * size + i`` to the dataset. The learning rate is a function of the stored
progress and the RNG states are saved, so ``--resume`` continues exactly, DataLoader workers
included. Non-finite losses or gradient norms stop the run before the update.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from monodepth_ros.errors import ConfigError, DatasetError, MonodepthError, reraise_interruption
from monodepth_ros.model.checkpoint import load_state_checked, read_checkpoint, save_checkpoint
from monodepth_ros.model.metadata import ModelMetadata
from monodepth_ros.model.network import build_network
from monodepth_ros.training import losses as L
from monodepth_ros.training.config import TrainConfig, save_config
from monodepth_ros.training.datasets import collate_skip_none

LOG = logging.getLogger(__name__)


class TrainingDiverged(MonodepthError):
    """The loss became NaN or infinite."""


# ------------------------------------------------------------------------------ batching

class ResumableBatchSampler(torch.utils.data.Sampler):
    """Endless batches; batch number c of rank r is a function of (seed, c, r) only.

    Each epoch is a fresh permutation seeded by (seed, epoch); ranks take disjoint slices.
    Sample i of epoch e is yielded as the index ``e * size + i``: the dataset derives its
    augmentation from that index, so DataLoader workers (which hold copies of the dataset)
    and a resumed run see the epoch without any shared state.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0,
                 rank: int = 0, world_size: int = 1):
        if size < batch_size * world_size:
            raise ConfigError(f'dataset of {size} samples is smaller than batch_size x '
                              f'processes ({batch_size} x {world_size})')
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.rank, self.world_size = start, rank, world_size
        self.per_epoch = size // (batch_size * world_size)

    def indices(self, counter: int) -> list[int]:
        epoch, j = divmod(counter, self.per_epoch)
        generator = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        order = torch.randperm(self.size, generator=generator)
        first = (j * self.world_size + self.rank) * self.batch_size
        return [epoch * self.size + i for i in order[first:first + self.batch_size].tolist()]

    def __iter__(self):
        counter = self.start
        while True:
            yield self.indices(counter)
            counter += 1

    def __len__(self):   # endless; DataLoader only needs this for its progress hints
        return 2 ** 31


class BatchStream:
    """Draws batches from one dataset and counts them (the counter is saved for resume)."""

    def __init__(self, name, dataset, batch_size, seed, rank, world_size, num_workers=0):
        self.name, self.dataset = name, dataset
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        self.counter = 0
        self.skipped_this_epoch = 0
        self.empty_in_a_row = 0
        self._iterator = None
        self._per_epoch = None

    def restart(self, counter: int) -> None:
        self.counter = counter
        sampler = ResumableBatchSampler(len(self.dataset), self.batch_size, self.seed,
                                        counter, self.rank, self.world_size)
        self._per_epoch = sampler.per_epoch
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=self.num_workers,
            collate_fn=_collate_counting)
        self._iterator = iter(loader)

    def next(self):
        if self._iterator is None:
            self.restart(self.counter)
        batch, skipped = next(self._iterator)
        self.counter += 1
        self.skipped_this_epoch += skipped
        if self.counter % self._per_epoch == 0:
            epoch = self.counter // self._per_epoch
            if self.skipped_this_epoch:
                LOG.warning('%s data, epoch %d: skipped %d unreadable samples', self.name,
                            epoch, self.skipped_this_epoch)
            self.skipped_this_epoch = 0
        return batch

    def next_nonempty(self):
        """The next batch with a readable sample; DatasetError after an epoch without one."""
        while True:
            batch = self.next()
            if batch is not None:
                self.empty_in_a_row = 0
                return batch
            self.empty_in_a_row += 1
            if self.empty_in_a_row >= self._per_epoch:
                raise DatasetError(
                    f'{self.name} data: no readable sample in {self.empty_in_a_row} batches in '
                    f'a row (a whole epoch of {self._per_epoch * self.batch_size} samples on '
                    'this process); check the dataset paths and files (run with -v for the '
                    'reason of each skip)')


def _collate_counting(items):
    return collate_skip_none(items), sum(item is None for item in items)


# --------------------------------------------------------------------- schedule and state

class LRSchedule:
    """Linear warm-up, then cosine or poly decay over training progress in [0, 1]."""

    def __init__(self, optimizer, config):
        self.optimizer = optimizer
        self.config = config
        self.base_lr = config.lr
        self.progress = 0.0

    def factor(self, step: int, progress: float) -> float:
        cfg = self.config
        warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
        p = min(max(progress, 0.0), 1.0)
        if cfg.schedule == 'cosine':
            decay = 0.5 * (1.0 + math.cos(math.pi * p))
        else:
            decay = (1.0 - p) ** cfg.poly_power
        return warm * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * decay)

    def apply(self, step: int, progress: float) -> float:
        self.progress = progress
        lr = self.base_lr * self.factor(step, progress)
        for group in self.optimizer.param_groups:
            group['lr'] = lr * group.get('lr_scale', 1.0)
        return lr

    def state_dict(self) -> dict:
        return {'progress': float(self.progress), 'base_lr': float(self.base_lr)}

    def load_state_dict(self, state: dict) -> None:
        self.progress = float(state['progress'])
        self.base_lr = float(state['base_lr'])


def rng_state() -> dict:
    """RNG states as tensors/plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {'torch': torch.get_rng_state(),
             'numpy_keys': torch.from_numpy(np_state[1].astype(np.int64)),
             'numpy_pos': int(np_state[2]), 'numpy_gauss': [int(np_state[3]),
                                                             float(np_state[4])],
             'python': torch.tensor(random.getstate()[1], dtype=torch.int64)}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    np.random.set_state(('MT19937', state['numpy_keys'].numpy().astype(np.uint32),
                         int(state['numpy_pos']), int(state['numpy_gauss'][0]),
                         float(state['numpy_gauss'][1])))
    random.setstate((3, tuple(int(v) for v in state['python'].tolist()), None))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


# ----------------------------------------------------------------------------------- losses

def depth_batch_losses(out: dict, depth: torch.Tensor, phase: int, config: TrainConfig) -> dict:
    """Loss terms of a depth-labelled batch; only the depth heads (and shared layers) learn."""
    net, weights = config.network, config.loss
    a, b = net.depth_min, net.depth_max
    if weights.far_as_max:
        depth = L.far_depth_as_max(depth, b)
    terms = {'bin_ce': L.multiscale_bin_cross_entropy(out['bin_logits'], depth, a, b)}
    total = weights.bin_ce * terms['bin_ce']
    if weights.fusion_log_l1 > 0:
        terms['fusion_log_l1'] = L.log_l1(out['log_depth_classification'], depth, a, b)
        total = total + weights.fusion_log_l1 * terms['fusion_log_l1']
    if phase == 2:
        terms['l1'] = L.l1_depth(out['depth'], depth, a, b)
        terms['silog'] = L.scale_invariant_log(out['depth'], depth, a, b,
                                               weights.silog_lambda)
        total = total + weights.l1 * terms['l1'] + weights.silog * terms['silog']
    terms['total'] = total
    return terms


def semantic_batch_losses(out: dict, semantics: torch.Tensor, config: TrainConfig) -> dict:
    """Loss of a semantics-labelled batch; only the semantic head (and shared layers) learn."""
    ce = L.semantic_cross_entropy(out['semantic_logits'], semantics)
    return {'semantic_ce': ce, 'total': config.loss.semantic * ce}


# ---------------------------------------------------------------------------- the trainer

def default_device(name: str) -> torch.device:
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'device {name!r} requested but CUDA is not available')
    return torch.device(name)


def phase_of(step: int, config: TrainConfig, progress: float) -> int:
    """Phase 2 covers the last phase2_steps steps (by progress under a time budget)."""
    if config.phase2_steps <= 0:
        return 1
    return 2 if progress >= 1.0 - config.phase2_steps / config.steps else 1


class Trainer:
    """Runs one training job; ``run()`` returns the final metrics dict (rank 0).

    ``datasets``: {'depth': Dataset, 'semantic': Dataset | None, 'val': list of samples}
    (samples as made by ``datasets.make_sample`` at network size).
    """

    def __init__(self, config: TrainConfig, datasets: dict, output_dir=None, resume=None,
                 rank: int = 0, world_size: int = 1, show_progress: bool = True):
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.output_dir = Path(output_dir or config.output_dir)
        self.device = default_device(config.device)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        self.model = build_network(config.network).to(self.device)
        self.module = self.model
        if world_size > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == 'cuda'
                else None, find_unused_parameters=True)
        self.optimizer = torch.optim.AdamW(self._parameter_groups(), lr=config.optim.lr,
                                           weight_decay=config.optim.weight_decay)
        self.schedule = LRSchedule(self.optimizer, config.optim)
        self.use_amp = config.amp and self.device.type == 'cuda'
        self.scaler = torch.amp.GradScaler('cuda') if self.use_amp else None
        workers = config.data.num_workers
        self.depth_stream = BatchStream('depth', datasets['depth'], config.data.batch_size,
                                        config.seed, rank, world_size, workers)
        semantic = datasets.get('semantic')
        self.semantic_stream = (BatchStream('semantic', semantic, config.data.batch_size,
                                            config.seed + 1, rank, world_size, workers)
                                if semantic is not None else None)
        self.val_samples = datasets.get('val') or []
        self.step = 0
        self.elapsed_s = 0.0
        self.show_progress = show_progress and rank == 0
        self.writer = None
        self.history = []
        self.last_checkpoint = None   # the newest checkpoint with training state
        if resume:
            self.resume(resume)

    def _parameter_groups(self) -> list[dict]:
        """Encoder parameters, at optim.encoder_lr_scale x the learning rate, and the rest.

        A pretrained encoder that learns slowly keeps more of what it learned on real images;
        at scale 0 it does not learn at all (no gradient, so no backward pass through it).
        """
        scale = self.config.optim.encoder_lr_scale
        encoder = list(self.module.encoder.parameters())
        for parameter in encoder:
            parameter.requires_grad_(scale > 0)
        encoder_ids = {id(p) for p in encoder}
        rest = [p for p in self.module.parameters() if id(p) not in encoder_ids]
        return [{'params': encoder, 'lr_scale': scale}, {'params': rest, 'lr_scale': 1.0}]

    def _freeze_encoder_batch_norm(self) -> None:
        """Keep the encoder's BatchNorm statistics (e.g. ImageNet's) fixed while training."""
        for module in self.module.encoder.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()

    # -- state ----------------------------------------------------------------------------
    def metadata(self) -> ModelMetadata:
        from monodepth_ros.training.datasets import canonical_focal

        cfg = self.config
        return ModelMetadata(
            input_height=cfg.data.height, input_width=cfg.data.width,
            depth_min=cfg.network.depth_min, depth_max=cfg.network.depth_max,
            num_bins=cfg.network.num_bins, network=cfg.network.to_dict(),
            description=cfg.description or f'monodepth_ros {cfg.network.encoder}',
            canonical_focal=canonical_focal(cfg))

    def save(self, name: str = 'last.pt') -> Path | None:
        if self.rank != 0:
            return None
        bad = [k for k, v in self.module.state_dict().items()
               if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise TrainingDiverged(f'weights became non-finite ({bad[0]} and {len(bad) - 1} '
                                   f'more) at step {self.step}; not saved; '
                                   f'{self._kept_checkpoint()}')
        extra = {'depth_batches': self.depth_stream.counter,
                 'semantic_batches': (self.semantic_stream.counter
                                      if self.semantic_stream else 0),
                 'elapsed_s': float(self.elapsed_s),
                 'config': self.config.to_dict()}
        if self.scaler is not None:
            extra['scaler'] = self.scaler.state_dict()
        path = save_checkpoint(self.output_dir / name, self.module, self.config.network,
                               self.metadata(), optimizer=self.optimizer,
                               scheduler=self.schedule, step=self.step,
                               rng_state=rng_state(), extra=extra)
        self.last_checkpoint = Path(path)
        return path

    def _kept_checkpoint(self) -> str:
        if self.last_checkpoint is None:
            return 'no checkpoint was written yet'
        return f'the last good checkpoint is {self.last_checkpoint}'

    def resume(self, path) -> None:
        payload = read_checkpoint(path)
        for key in ('optimizer', 'scheduler', 'step', 'rng', 'extra'):
            if key not in payload:
                raise ConfigError(f'--resume {path}: checkpoint has no training state '
                                  f'({key!r} missing); it is a final model, not last.pt')
        self._check_network_config(payload.get('network') or {}, path)
        load_state_checked(self.module, payload['model'], f'--resume {path}')
        groups = len(payload['optimizer'].get('param_groups', []))
        if groups != len(self.optimizer.param_groups):
            raise ConfigError(f'--resume {path}: its optimizer state has {groups} parameter '
                              f'group(s), this version trains {len(self.optimizer.param_groups)}'
                              ' (encoder, rest); start a new run from its model weights')
        self.optimizer.load_state_dict(payload['optimizer'])
        # The configured encoder scale, not the stored one (groups: encoder, rest).
        self.optimizer.param_groups[0]['lr_scale'] = self.config.optim.encoder_lr_scale
        self.schedule.load_state_dict(payload['scheduler'])
        self.step = int(payload['step'])
        extra = payload['extra']
        self.elapsed_s = float(extra.get('elapsed_s', 0.0))
        self.depth_stream.counter = int(extra['depth_batches'])
        if self.semantic_stream is not None:
            self.semantic_stream.counter = int(extra['semantic_batches'])
        if self.scaler is not None and 'scaler' in extra:
            self.scaler.load_state_dict(extra['scaler'])
        set_rng_state(payload['rng'])
        self.last_checkpoint = Path(path)
        LOG.info('resumed from %s at step %d', path, self.step)

    def _check_network_config(self, stored: dict, path) -> None:
        """The resumed weights must come from the configured network ('pretrained' aside)."""
        wanted = self.config.network.to_dict()
        keys = (set(stored) | set(wanted)) - {'pretrained'}
        differing = sorted(k for k in keys if _plain(stored.get(k)) != _plain(wanted.get(k)))
        if differing:
            details = ', '.join(f'{k}: checkpoint {stored.get(k)!r} vs config '
                                f'{wanted.get(k)!r}' for k in differing)
            raise ConfigError(f'--resume {path}: the checkpoint was trained with another '
                              f'network configuration ({details}); resume with its '
                              'config.yaml or start a new run')

    # -- one step -------------------------------------------------------------------------
    def progress(self) -> float:
        by_steps = self.step / self.config.steps
        if self.config.max_minutes > 0:
            return max(by_steps, self.elapsed_s / (60.0 * self.config.max_minutes))
        return by_steps

    def batch_kind(self) -> str:
        """Every ``semantic_every``-th batch is semantic (2: strict alternation)."""
        every = self.config.semantic_every
        if self.semantic_stream is None or every <= 0:
            return 'depth'
        return 'semantic' if self.step % every == every - 1 else 'depth'

    def train_step(self) -> dict:
        progress = self.progress()
        phase = phase_of(self.step, self.config, progress)
        lr = self.schedule.apply(self.step, progress)
        kind = self.batch_kind()
        stream = self.depth_stream if kind == 'depth' else self.semantic_stream
        batch = stream.next_nonempty()
        self.model.train()
        if self.config.optim.freeze_encoder_bn or self.config.optim.encoder_lr_scale == 0:
            self._freeze_encoder_batch_norm()
        self.optimizer.zero_grad(set_to_none=True)
        image = batch['image'].to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            # Only the head of this batch's labels runs: the other head's BatchNorm
            # statistics must not drift towards the other dataset.
            out = self.model(image, heads=(kind,))
        out = {k: (v.float() if torch.is_tensor(v) else [t.float() for t in v])
               for k, v in out.items()}
        if kind == 'depth':
            terms = depth_batch_losses(out, batch['depth'].to(self.device), phase, self.config)
        else:
            terms = semantic_batch_losses(out, batch['semantics'].to(self.device), self.config)
        loss = terms['total']
        finite = torch.isfinite(loss.detach()).float()
        if self.world_size > 1:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() < 1:
            raise TrainingDiverged(
                f'loss became {loss.item()} at step {self.step} ({kind} batch, phase {phase}); '
                f'stopped; {self._kept_checkpoint()} (lower optim.lr or check the data)')
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        params = [p for p in self.module.parameters() if p.grad is not None]
        # max_norm inf measures the norm without clipping.
        clip = self.config.optim.grad_clip if self.config.optim.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip).detach().float().reshape(1)
        if self.scaler is None:   # (GradScaler itself skips steps with inf/NaN gradients)
            finite = torch.isfinite(grad_norm).float()
            if self.world_size > 1:
                torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
            if finite.item() < 1:
                raise TrainingDiverged(
                    f'gradient norm became {grad_norm.item()} at step {self.step} ({kind} '
                    f'batch, phase {phase}); stopped before the update; '
                    f'{self._kept_checkpoint()} (lower optim.lr or check the data)')
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step += 1
        result = {k: float(v.detach()) for k, v in terms.items()}
        result.update(lr=lr, phase=phase, kind=kind)
        return result

    # -- validation -----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, samples=None, caps=(50.0, 80.0)) -> dict:
        from monodepth_ros.training.evaluate import evaluate_samples

        samples = self.val_samples if samples is None else samples
        if not samples:
            return {}
        return evaluate_samples(self.module, samples, self.device, caps)

    def _log(self, values: dict, prefix: str) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f'{prefix}/{key}', value, self.step)

    def _log_images(self) -> None:
        if self.writer is None or not self.val_samples:
            return
        from monodepth_ros.model.semantics import colorize_labels
        from monodepth_ros.training.datasets import normalize_image

        sample = self.val_samples[0]
        self.module.eval()
        with torch.no_grad():
            out = self.module(normalize_image(sample['rgb'])[None].to(self.device))
        depth = out['depth'][0, 0].cpu().numpy()
        semantics = out['semantic_logits'][0].argmax(0).cpu().numpy().astype(np.uint8)
        inverse = 1.0 / np.maximum(depth, 1e-3)
        inverse = (inverse - inverse.min()) / max(float(np.ptp(inverse)), 1e-6)
        self.writer.add_image('val/rgb', sample['rgb'], self.step, dataformats='HWC')
        self.writer.add_image('val/inverse_depth', inverse[None], self.step)
        self.writer.add_image('val/semantics', colorize_labels(semantics), self.step,
                              dataformats='HWC')

    # -- the loop -------------------------------------------------------------------------
    def run(self, stop_at: int | None = None) -> dict:
        """Train to ``config.steps`` (or only to step ``stop_at``, e.g. to resume later)."""
        cfg = self.config
        last_step = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        if self.rank == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.output_dir / 'config.yaml')
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(self.output_dir / 'tensorboard'))
            except ImportError as error:
                reraise_interruption(error)
                LOG.warning('tensorboard is not installed; no TensorBoard logs')
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=self.step, desc='train',
                   disable=None if self.show_progress else True, dynamic_ncols=True)
        metrics = {}
        started = time.monotonic() - self.elapsed_s
        stopped_for_time = False
        try:
            while self.step < last_step:
                values = self.train_step()
                self.elapsed_s = time.monotonic() - started
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == 1:
                    self._log({k: v for k, v in values.items() if k != 'kind'},
                              f'train_{values["kind"]}')
                    bar.set_postfix(loss=f'{values["total"]:.3f}', phase=values['phase'])
                    self.history.append((self.step, values))
                if cfg.val_every and self.step % cfg.val_every == 0 and self.rank == 0:
                    metrics = self.validate()
                    self._log(metrics, 'val')
                    self._log_images()
                    if metrics:
                        LOG.info('step %d: val abs_rel@80 %.4f delta1@80 %.4f', self.step,
                                 metrics.get('abs_rel@80', float('nan')),
                                 metrics.get('delta1@80', float('nan')))
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save()
                if (cfg.max_minutes > 0 and self.step < cfg.steps
                        and self._time_is_up(cfg.max_minutes)):
                    stopped_for_time = True
                    LOG.info('time budget of %.1f min reached at step %d', cfg.max_minutes,
                             self.step)
                    break
        finally:
            bar.close()
        self.save()
        if self.rank == 0:
            final_path = save_checkpoint(self.output_dir / 'model.pt', self.module,
                                         cfg.network, self.metadata())
            metrics = self.validate() if self.val_samples else metrics
            self._log(metrics, 'val')
            if self.writer is not None:
                self.writer.close()
            LOG.info('model written to %s%s', final_path,
                     ' (stopped by the time budget)' if stopped_for_time else '')
        return metrics

    def _time_is_up(self, minutes: float) -> bool:
        up = torch.tensor([1.0 if self.elapsed_s >= minutes * 60.0 else 0.0])
        if self.world_size > 1:   # every rank stops at the same step
            torch.distributed.all_reduce(up, op=torch.distributed.ReduceOp.MAX)
        return bool(up.item() > 0)


def _plain(value):
    """Lists and tuples compare equal (YAML gives lists, dataclasses may hold tuples)."""
    return list(value) if isinstance(value, (list, tuple)) else value


def distributed_context():
    """(rank, world_size, local_rank) from torchrun's environment, (0, 1, 0) otherwise."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size <= 1:
        return 0, 1, 0
    return int(os.environ['RANK']), world_size, int(os.environ.get('LOCAL_RANK', '0'))
