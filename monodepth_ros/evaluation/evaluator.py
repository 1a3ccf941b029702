"""Grade the depth of a bag against LiDAR ground truth from the same bag.

The depth is a recorded depth topic, a model run on the bag's images, or a baseline that
never looks at the image (the row prior, fitted leave-one-out on the bag's own ground truth
in a first pass over the bag). :meth:`BagEvaluator.ground_truth_frames` streams the bag
the same way and hands each frame's ground truth to a callback instead of grading it (the
row prior and ``monodepth adapt`` are built on it).

The bag is streamed once in time order; memory stays flat in the bag length: only the LiDAR
scans of the last ``max_time_diff_ms`` + ``PENDING_HORIZON_NS`` (recorded depth is written
after its stamp, by the node's latency), the latest few camera_infos and images, and a short
queue of depth frames waiting for the scan that follows them are kept. A frame is matched to
the scan nearest to its header stamp, within ``max_time_diff_ms``.

Bad input never ends the run: a frame that cannot be graded (bad image or camera_info, no
scan close in time, no LiDAR -> camera transform yet because ``/tf_static`` comes later) is
skipped and counted with the reason; so is a malformed LiDAR scan. The run fails at the end
only when no frame could be connected to the LiDAR (the error names the frames).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from monodepth_ros.errors import (
    BagError,
    CalibrationError,
    ConfigError,
    MessageError,
    MonodepthError,
    TransformError,
)
from monodepth_ros.evaluation.ground_truth import (
    GroundTruthBuilder,
    ScanWindow,
    StampedWindow,
    scan_from_message,
    split_scan,
)
from monodepth_ros.evaluation.metrics import (
    METRIC_NAMES,
    GroupedErrors,
    RunningMean,
    band_labels,
    distance_band_edges,
    distance_band_index,
    evaluated_indices,
    log_scale_to_lidar,
    metrics_at_caps,
    prepare_prediction,
    scale_stability,
    valid_prediction,
)
from monodepth_ros.io import topics
from monodepth_ros.io.bagio import describe_topics
from monodepth_ros.io.framing import DEFAULT_ANCHOR, DEFAULT_FRAMING
from monodepth_ros.io.messages import check_topic_type
from monodepth_ros.runtime.far_pass import DEFAULT_FAR_PASS_FOCAL
from monodepth_ros.runtime.pipeline import resize_depth_bilinear, resize_nearest
from monodepth_ros.runtime.scale import ScaleReference, ScaleSettings

LOG = logging.getLogger(__name__)

HISTOGRAM_EDGES = np.linspace(-10.0, 10.0, 81)   # signed error p - g, metres, 0.25 m bins
MAX_PENDING = 8          # depth frames waiting for a later scan
RECENT = 8               # camera_infos / images / label images kept for stamp matching
# Scans are kept this long beyond the matching tolerance: a recorded depth frame is written
# after the scans that followed its image (by the node's latency) and must still find its own.
PENDING_HORIZON_NS = 2_000_000_000
MAX_SCANS = 100          # hard bound on the scans kept (a 2 s span at up to 50 Hz)
# Bad input of one frame (its image or depth image, camera_info, label image): the frame is
# skipped with the reason and the run goes on; so is a frame met before /tf_static (a missing
# transform fails the run at the end only if no frame at all could be connected). Other errors
# (a failing engine, a corrupt bag) would fail every frame alike and end the run.
FRAME_ERRORS = (MessageError, CalibrationError)
BASELINES = ('row-prior',)


@dataclass
class EvaluationConfig:
    depth_topic: str | None = None
    model: str | None = None
    baseline: str | None = None      # 'row-prior': graded leave-one-out on the bag itself
    backend: str = 'auto'
    precision: str = 'fp16'
    camera_topic: str = topics.CAMERA_IMAGE_TOPIC
    camera_info_topic: str | None = None
    lidar_topic: str = topics.LIDAR_TOPIC
    calib_dir: str | None = None
    protocol: str = 'default'
    crop: str | None = None          # None: 'garg' for kitti-eigen, 'none' otherwise
    median_scaling: bool = False
    max_time_diff_ms: float = 50.0
    semantics_topic: str | None = None
    caps: tuple[float, ...] = (80.0, 50.0)
    min_depth: float = 1e-3
    qualitative_frames: int = 4
    occlusion_filter: bool = True    # default protocol only
    progress: bool = True
    # Frames graded: those numbered first_frame .. last_frame - 1 in the order of the source
    # topic (None: from the first / to the last).
    first_frame: int | None = None
    last_frame: int | None = None
    engine_cache_dir: str | None = None   # with --model: where ONNX exports/engines go
    model_card: str | None = None    # with --model: a foreign ONNX model's card (model.cards)
    # With --model: how images reach the network input (io.framing; the node's parameters).
    framing: str = DEFAULT_FRAMING
    framing_anchor: float = DEFAULT_ANCHOR
    far_pass_focal: float = DEFAULT_FAR_PASS_FOCAL   # runtime.far_pass; 0: one pass
    ground_contact: bool = True      # runtime.ground_contact
    # With --model: metric scale (runtime.scale; the LiDAR of each frame is what 'lidar' fits
    # to). scale_holdout: fit to the even-numbered points of the scan and grade against the
    # odd ones, so that the grade is not taken on the very points the scale was fitted to.
    scale: ScaleSettings = field(default_factory=ScaleSettings)
    scale_holdout: bool = True

    def __post_init__(self):
        sources = [s for s in (self.depth_topic, self.model, self.baseline) if s is not None]
        if len(sources) > 1:
            raise ConfigError('give exactly one depth source: a depth topic, a model or a '
                              'baseline')
        if self.model is None and self.scale.mode not in ('auto', 'none'):
            raise ConfigError(f'--scale {self.scale.mode} applies to a model (--model); a depth '
                              'topic or a baseline is graded as it is')
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ConfigError(f'unknown baseline {self.baseline!r}, expected one of '
                              f'{", ".join(BASELINES)}')
        if self.crop is None:
            self.crop = 'garg' if self.protocol == 'kitti-eigen' else 'none'
        if not 0 <= self.max_time_diff_ms < np.inf:
            raise ConfigError(f'max_time_diff_ms must be finite and >= 0, got '
                              f'{self.max_time_diff_ms}')
        if not 0 < self.min_depth < min(self.caps, default=np.inf):
            raise ConfigError(f'min_depth must be > 0 and below the smallest cap, got '
                              f'{self.min_depth}')
        if not self.caps:
            raise ConfigError('at least one depth cap is needed')


@dataclass
class QualitativeFrame:
    stamp_ns: int
    rgb: np.ndarray | None
    gt: np.ndarray
    pred: np.ndarray


@dataclass
class EvaluationResult:
    config: EvaluationConfig
    bag_path: Path
    rows: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: list[str] = field(default_factory=list)
    scans_skipped: Counter = field(default_factory=Counter)
    means: dict[float, RunningMean] = field(default_factory=dict)
    by_distance: GroupedErrors | None = None
    by_class: GroupedErrors | None = None
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(len(HISTOGRAM_EDGES) - 1,
                                                                   dtype=np.int64))
    qualitative: list[QualitativeFrame] = field(default_factory=list)
    error: MonodepthError | None = None
    timing_ms: dict[str, float] = field(default_factory=dict)
    depth_source: str = ''

    @property
    def frames_evaluated(self) -> int:
        return len(self.rows)

    @property
    def frames_skipped(self) -> int:
        return int(sum(self.skipped.values()))

    def skip(self, reason: str, stamp_ns: int) -> None:
        self.skipped[reason] += 1
        if len(self.skipped_examples) < 20:
            self.skipped_examples.append(f'{stamp_ns}: {reason}')
        LOG.debug('frame %d skipped: %s', stamp_ns, reason)

    def skip_scan(self, reason: str, stamp_ns: int) -> None:
        self.scans_skipped[reason] += 1
        LOG.debug('LiDAR scan %d skipped: %s', stamp_ns, reason)

    def summary(self) -> dict:
        config = self.config
        summary = {
            'bag': str(self.bag_path),
            'depth_source': self.depth_source,
            'protocol': config.protocol,
            'crop': config.crop,
            'median_scaling': config.median_scaling,
            'min_depth': config.min_depth,
            'max_time_diff_ms': config.max_time_diff_ms,
        }
        for cap, mean in self.means.items():
            summary[cap_key(cap)] = mean.result()
        summary.update(
            frames_evaluated=self.frames_evaluated,
            frames_skipped={'count': self.frames_skipped, 'reasons': dict(self.skipped),
                            'examples': list(self.skipped_examples)},
            scans_skipped={'count': int(sum(self.scans_skipped.values())),
                           'reasons': dict(self.scans_skipped)},
            scale=scale_summary(self.rows),
            scale_stability=scale_stability([row.get('log_scale_to_lidar', math.nan)
                                             for row in self.rows]),
            by_distance=self.by_distance.rows() if self.by_distance else [],
            by_class=([row for row in self.by_class.rows() if row['n_pixels']]
                      if self.by_class else None),
            timing_ms=dict(self.timing_ms),
            error=str(self.error) if self.error else None)
        return summary


def scale_summary(rows: list[dict]) -> dict | None:
    """The scale stage over the graded frames (None when the depth had no scale stage)."""
    scaled = [row for row in rows if 'scale_mode' in row]
    if not scaled:
        return None
    scales = np.array([row['scale'] for row in scaled if row['scale'] is not None], float)
    fitted = [row for row in scaled if row['scale_points']]
    residuals = np.array([row['scale_residual'] for row in fitted], float)

    def median(values) -> float:
        return float(np.median(values)) if len(values) else math.nan

    return {'mode': scaled[0]['scale_mode'], 'frames': len(scaled),
            'frames_fitted': len(fitted),
            'frames_held': int(sum(row['scale_held'] for row in scaled)),
            'resets': int(sum(row['scale_reset'] for row in scaled)),
            'scale_median': median(scales),
            'scale_min': float(scales.min()) if scales.size else math.nan,
            'scale_max': float(scales.max()) if scales.size else math.nan,
            'residual_median': median(residuals),
            'points_median': median([row['scale_points'] for row in fitted])}


def cap_key(cap: float) -> str:
    return f'cap_{cap:g}'


@dataclass
class _Pending:
    stamp_ns: int
    msg: object
    index: int


def _nearest_within(window: StampedWindow, stamp_ns: int, tolerance_ns: int | None = None):
    """The item of ``window`` nearest to stamp_ns, None if empty or beyond tolerance_ns."""
    item, gap = window.nearest(stamp_ns)
    if item is None or (tolerance_ns is not None and gap > tolerance_ns):
        return None
    return item


class BagEvaluator:
    """Stream one bag and grade its depth frames (see the module doc)."""

    def __init__(self, config: EvaluationConfig, pipeline=None, row_prior=None):
        """Set up the evaluation; ``row_prior`` is a fitted RowPrior for the row-prior baseline.

        Without one (and with ``baseline='row-prior'``) the prior is fitted leave-one-out on
        the graded bag; a given one (e.g. fitted on other frames) is used as it is.
        """
        self.config = config
        self.pipeline = pipeline
        self.calibration = None
        self.row_prior = row_prior
        self._on_ground_truth = None    # set by ground_truth_frames
        if config.calib_dir:
            from monodepth_ros.io.kitti import read_calibration

            self.calibration = read_calibration(config.calib_dir)
        if config.model is not None and pipeline is None:
            self.pipeline = self._make_pipeline()

    def _make_pipeline(self):
        from monodepth_ros.runtime.infer import load_engine
        from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

        engine = load_engine(self.config.model, self.config.backend, self.config.precision,
                             cache_dir=self.config.engine_cache_dir,
                             card=self.config.model_card)
        # Depth at the camera resolution: graded at the pixels the LiDAR hits (those outside
        # the part of the image the network saw are NaN: they lower the coverage).
        config = self.config
        return DepthPipeline(engine, PipelineConfig(
            output_resolution='camera', depth_upsampling='bilinear',
            framing=config.framing, framing_anchor=config.framing_anchor,
            far_pass_focal=config.far_pass_focal, ground_contact=config.ground_contact,
            scale=replace(config.scale, lidar=True)))

    # -- topics -------------------------------------------------------------------------------
    def _resolve_topics(self, available: dict[str, str], path: Path) -> dict[str, str | None]:
        config = self.config
        source = config.depth_topic or config.camera_topic
        wanted = {'source': source, 'lidar': config.lidar_topic}
        purposes = {'source': 'depth to grade' if config.depth_topic else 'camera images',
                    'lidar': 'LiDAR point clouds'}
        wanted['info'] = (config.camera_info_topic
                          or topics.camera_info_topic_for(source, available))
        purposes['info'] = 'camera_info of the depth images'
        if config.semantics_topic:
            wanted['labels'] = config.semantics_topic
            purposes['labels'] = 'semantic labels'
        if config.protocol == 'kitti-eigen' and self.calibration is None:
            # The Eigen ground truth lives at the full image size: the camera images' own
            # camera_info, not the depth's (a recorded depth may be at network resolution).
            wanted['full_info'] = topics.sibling_camera_info_topic(config.camera_topic)
            purposes['full_info'] = (
                f'full-size camera_info of {config.camera_topic}, needed by kitti-eigen '
                'without --calib (or give --calib, or --camera-topic of the full-size camera)')
        missing = [f'{topic!r} ({purposes[key]})' for key, topic in wanted.items()
                   if topic not in available]
        if missing:
            raise BagError(f'bag {path} has no topic {", ".join(missing)}; '
                           f'{describe_topics(available)}')
        for key, expected in (('info', 'CameraInfo'), ('full_info', 'CameraInfo'),
                              ('lidar', 'PointCloud2')):
            if key in wanted:
                check_topic_type(wanted[key], available[wanted[key]], expected, path)
        wanted['tf_static'] = topics.TF_STATIC_TOPIC if topics.TF_STATIC_TOPIC in available \
            else None
        wanted['image'] = None
        if config.depth_topic and config.qualitative_frames > 0 \
                and config.camera_topic in available:
            wanted['image'] = config.camera_topic
        return wanted

    # -- main loop ----------------------------------------------------------------------------
    def evaluate(self, bag_path) -> EvaluationResult:
        """Grade every depth frame of the bag.

        Errors met while streaming end the run early and are kept in ``result.error`` with the
        frames graded so far.
        """
        from tqdm import tqdm

        from monodepth_ros.io.bagio import BagReader
        from monodepth_ros.io.messages import stamp_to_ns
        from monodepth_ros.io.transforms import TransformBuffer

        config = self.config
        if self._on_ground_truth is None and not (config.depth_topic or config.model
                                                  or config.baseline):
            raise ConfigError('give exactly one depth source: a depth topic, a model or a '
                              'baseline')
        path = Path(bag_path)
        result = EvaluationResult(config=config, bag_path=path)
        result.means = {cap: RunningMean() for cap in config.caps}
        edges = distance_band_edges(max(config.caps), 10.0)
        self._edges = edges
        result.by_distance = GroupedErrors(band_labels(edges))
        self._prior = None
        if config.baseline == 'row-prior' and self._on_ground_truth is None:
            if self.row_prior is None:   # fitted on this bag for this call only
                self._prior = self._fit_row_prior(path)
                result.depth_source = f'baseline {config.baseline} (leave-one-out)'
            else:
                self._prior = self.row_prior
                result.depth_source = (f'baseline {config.baseline} (fitted on '
                                       f'{self.row_prior.frames} other frames)')
        else:
            result.depth_source = (f'topic {config.depth_topic}' if config.depth_topic else
                                   f'model {config.model}')
        if self.pipeline is not None and config.model is not None:
            engine = self.pipeline.engine
            result.depth_source += f' ({getattr(engine, "name", "?")}, ' \
                                   f'{getattr(engine, "precision", "?")})'
        self._scale_mode = None
        if self.pipeline is not None and config.model is not None \
                and self._on_ground_truth is None:
            # Checked before reading the bag: an affine model with no way to metres is one line.
            self._scale_mode = self.pipeline.resolved_scale_mode()
            result.depth_source += f', scale {self._scale_mode}'
            if self._scale_mode == 'lidar':
                result.depth_source += (' fitted to the even-numbered LiDAR points, graded on '
                                        'the odd ones' if config.scale_holdout else
                                        ' fitted to the same LiDAR it is graded on (optimistic)')
        self._timing = Counter()
        started = time.perf_counter()
        tolerance_ns = int(round(config.max_time_diff_ms * 1e6))

        with BagReader(path) as bag:
            available = bag.topics
            wanted = self._wanted = self._resolve_topics(available, path)
            read = [topic for topic in dict.fromkeys(wanted.values()) if topic]
            counts = bag.message_counts
            total_frames = counts.get(wanted['source'], 0)
            count = max(config.qualitative_frames, 0)
            self._strip_indices = set(
                np.linspace(0, total_frames - 1, min(count, total_frames)).round().astype(int)
                .tolist()) if total_frames else set()
            transforms = TransformBuffer()
            self._builder = GroundTruthBuilder(config.protocol, self.calibration, transforms,
                                               occlusion_filter=config.occlusion_filter)
            if config.protocol == 'kitti-eigen' and self.calibration is None:
                LOG.warning("kitti-eigen protocol without --calib: ground truth from the bag's "
                            'transforms equals the published one up to float rounding only')
            window = ScanWindow(tolerance_ns + PENDING_HORIZON_NS, MAX_SCANS)
            infos, full_infos, images, labels = (StampedWindow(RECENT) for _ in range(4))
            self._infos, self._full_infos = infos, full_infos
            self._images, self._labels = images, labels
            self._tf_static_seen = self.calibration is not None
            self._transform_error = None
            pending: deque[_Pending] = deque()
            frame_index = 0
            progress = tqdm(total=sum(counts.get(topic, 0) for topic in read), unit='msg',
                            desc='eval-bag', disable=None if config.progress else True)
            try:
                for topic, stamp, msg in bag.messages(read):
                    progress.update(1)
                    if topic == wanted['source']:
                        frame_index += 1
                        if not self._selected(frame_index - 1):
                            continue
                        pending.append(_Pending(stamp_to_ns(msg.header.stamp), msg,
                                                frame_index - 1))
                        if len(pending) > MAX_PENDING:
                            self._grade(pending.popleft(), window, tolerance_ns, result)
                    elif topic == wanted['lidar']:
                        start = time.perf_counter()
                        try:
                            scan = scan_from_message(msg)
                        except MessageError as error:
                            result.skip_scan(f'bad LiDAR scan: {error}', stamp)
                            continue
                        self._timing['lidar_decode'] += time.perf_counter() - start
                        window.add(scan)
                        # Frames up to this scan's stamp now know both neighbouring scans.
                        while pending and pending[0].stamp_ns <= scan.stamp_ns:
                            self._grade(pending.popleft(), window, tolerance_ns, result)
                    elif topic in (wanted['info'], wanted.get('full_info')):
                        # One topic may be both (depth at the camera's own size).
                        if topic == wanted['info']:
                            infos.add(stamp_to_ns(msg.header.stamp), msg)
                        if topic == wanted.get('full_info'):
                            full_infos.add(stamp_to_ns(msg.header.stamp), msg)
                    elif topic == wanted['tf_static']:
                        transforms.add_message(msg, static=True)
                        self._tf_static_seen = True
                    elif topic == wanted.get('labels'):
                        labels.add(stamp_to_ns(msg.header.stamp), msg)
                    elif topic == wanted['image']:
                        images.add(stamp_to_ns(msg.header.stamp), msg)
                while pending:
                    self._grade(pending.popleft(), window, tolerance_ns, result)
            except MonodepthError as error:
                result.error = error
                # Frames already read are still graded with the scans read so far.
                try:
                    while pending:
                        self._grade(pending.popleft(), window, tolerance_ns, result)
                except MonodepthError:
                    pass
                LOG.error('evaluation stopped after %d frames: %s', result.frames_evaluated,
                          error)
            finally:
                progress.close()
        if result.error is None and not result.frames_evaluated \
                and self._transform_error is not None:
            # Not one frame could be connected to the LiDAR: that is an error of the bag (or
            # of --calib), not of single frames.
            result.error = self._transform_error
        elapsed = time.perf_counter() - started
        result.timing_ms = {name: 1e3 * seconds / max(result.frames_evaluated, 1)
                            for name, seconds in self._timing.items()}
        result.timing_ms['total_per_frame'] = 1e3 * elapsed / max(result.frames_evaluated, 1)
        return result

    def _selected(self, index: int) -> bool:
        first, last = self.config.first_frame, self.config.last_frame
        return (first is None or index >= first) and (last is None or index < last)

    def ground_truth_frames(self, bag_path, callback) -> EvaluationResult:
        """Stream the bag as :meth:`evaluate` does, calling ``callback(frame, gt, camera)``.

        ``frame`` has ``index`` (in the source topic), ``stamp_ns`` and ``msg`` (the source
        message); ``gt`` is the ground-truth depth (0 = none) in ``camera``, built exactly as
        for grading. No prediction is made; the result holds the skip counts.
        """
        self._on_ground_truth = callback
        try:
            return self.evaluate(bag_path)
        finally:
            self._on_ground_truth = None

    def _fit_row_prior(self, path: Path):
        from monodepth_ros.evaluation.row_prior import RowPrior

        prior = RowPrior(max_depth=max(self.config.caps), min_depth=self.config.min_depth)
        collected = self.ground_truth_frames(path, lambda frame, gt, _camera: prior.add(
            gt, frame=frame.index))
        if collected.error is not None:
            raise collected.error
        if prior.frames < 2:
            raise ConfigError(f'row prior: {prior.frames} frame(s) of {path} have ground truth '
                              f'(skipped: {dict(collected.skipped)}); the leave-one-out prior '
                              'needs at least 2')
        return prior

    # -- one frame ----------------------------------------------------------------------------
    def _grade(self, frame: _Pending, window: ScanWindow, tolerance_ns: int,
               result: EvaluationResult) -> None:
        from monodepth_ros.io.messages import depth_image_to_metres

        config = self.config
        scan, gap = window.nearest(frame.stamp_ns)
        if scan is None:
            result.skip('no usable LiDAR scan received yet', frame.stamp_ns)
            return
        if gap > tolerance_ns:
            result.skip(f'no LiDAR scan within {config.max_time_diff_ms:g} ms (nearest '
                        f'{gap / 1e6:.1f} ms away)', frame.stamp_ns)
            return
        info, camera = self._camera_before(self._infos, frame.stamp_ns, 'camera_info', result)
        if camera is None:
            return
        frame_id = str(frame.msg.header.frame_id) or str(info.header.frame_id)
        labels = None
        rgb = None
        pred = None
        scale = None
        start = time.perf_counter()
        if self._on_ground_truth is not None or config.baseline:
            pass   # no prediction, or one made from the ground truth's shape below
        elif self.pipeline is not None and config.model is not None:
            reference = None
            if self._scale_mode == 'lidar':
                fit_scan, scan = split_scan(scan) if config.scale_holdout else (scan, scan)
                try:
                    reference = ScaleReference(fit_scan.points, self._builder.T_camera_from_lidar(
                        frame_id, scan.frame_id))
                except TransformError as error:
                    self._skip_transform(error, frame.stamp_ns, result)
                    return
            try:
                rgb = self.pipeline.decode(frame.msg)
                output = self.pipeline.process_arrays(rgb, camera,
                                                      outputs={'depth', 'semantics'},
                                                      reference=reference)
            except FRAME_ERRORS as error:
                result.skip(f'frame not usable: {error}', frame.stamp_ns)
                return
            pred, labels, camera = output.depth, output.semantics, output.camera
            scale = output.scale
            self._timing['inference'] += time.perf_counter() - start
            for stage, milliseconds in output.timings.items():   # the pipeline's own stages
                self._timing[f'pipeline_{stage}'] += milliseconds / 1e3
        else:
            try:
                pred = depth_image_to_metres(frame.msg)
            except FRAME_ERRORS as error:
                result.skip(str(error), frame.stamp_ns)
                return
            # kitti-eigen grades on the full-size camera (resizing the depth): the depth's
            # own camera_info only needs to match under the default protocol.
            if config.protocol == 'default' and pred.shape != (camera.height, camera.width):
                result.skip(f'depth image {pred.shape[1]}x{pred.shape[0]} does not match its '
                            f'camera_info {camera.width}x{camera.height}', frame.stamp_ns)
                return
            self._timing['depth_decode'] += time.perf_counter() - start
        if config.semantics_topic:
            try:
                labels = self._label_image(frame.stamp_ns)
            except FRAME_ERRORS as error:
                result.skip(f'label image not usable: {error}', frame.stamp_ns)
                return

        gt_camera, gt_frame = camera, frame_id
        if 'full_info' in self._wanted:
            full_info, gt_camera = self._camera_before(
                self._full_infos, frame.stamp_ns,
                f'full-size camera_info ({self._wanted["full_info"]})', result)
            if gt_camera is None:
                return
            gt_frame = str(full_info.header.frame_id) or frame_id

        start = time.perf_counter()
        try:
            gt = self._builder.build(scan, gt_camera, gt_frame)
        except TransformError as error:
            self._skip_transform(error, frame.stamp_ns, result)
            return
        self._timing['ground_truth'] += time.perf_counter() - start
        if self._on_ground_truth is not None:
            self._on_ground_truth(frame, gt, gt_camera)
            result.rows.append({'stamp_ns': frame.stamp_ns})
            return
        if pred is None:
            pred = self._prior.predict(gt.shape[1], gt.shape[0], leave_out=frame.index)
        if pred.shape != gt.shape:
            # kitti-eigen: grade at the full image size, as the protocol resizes predictions
            # (bilinear; invalid depth is never blended into valid pixels).
            pred = resize_depth_bilinear(pred.astype(np.float32, copy=False), gt.shape[1],
                                         gt.shape[0])
        if labels is not None and labels.shape != gt.shape:
            labels = resize_nearest(labels, gt.shape[1], gt.shape[0])

        start = time.perf_counter()
        # Pixels selected once at the largest cap; each cap grades a subset of them.
        index = evaluated_indices(gt, config.min_depth, max(config.caps), config.crop)
        gt_all, pred_all = gt.ravel()[index], pred.ravel()[index]
        per_cap = metrics_at_caps(gt_all, pred_all, config.caps, config.min_depth,
                                  config.median_scaling)
        main_cap = config.caps[0]
        if per_cap[main_cap]['n_pixels'] == 0:
            result.skip('no ground-truth pixel with a finite prediction in the evaluated region',
                        frame.stamp_ns)
            return
        row = {'stamp_ns': frame.stamp_ns, 'lidar_stamp_ns': scan.stamp_ns,
               'lidar_dt_ms': round((scan.stamp_ns - frame.stamp_ns) / 1e6, 3)}
        for cap_index, cap in enumerate(config.caps):
            metrics = per_cap[cap]
            result.means[cap].add(metrics)
            prefix = '' if cap_index == 0 else f'{cap_key(cap)}_'
            for name in METRIC_NAMES + ('n_pixels', 'coverage'):
                row[prefix + name] = metrics[name]
        keep = (gt_all < main_cap) & valid_prediction(pred_all)
        # The frame's scale against the LiDAR: how far it wanders from frame to frame is the
        # flicker (scale_stability); graded for every depth source, not only scaled ones.
        row['log_scale_to_lidar'] = log_scale_to_lidar(gt_all[keep], pred_all[keep])
        if scale is not None:
            row.update(scale_mode=scale.mode, scale=scale.scale, scale_shift=scale.shift,
                       scale_residual=scale.residual, scale_points=scale.points,
                       scale_held=int(scale.held), scale_reset=int(scale.reset))
        result.rows.append(row)
        self._breakdowns(gt_all[keep], pred_all[keep],
                         None if labels is None else labels.ravel()[index][keep], main_cap, result)
        self._timing['metrics'] += time.perf_counter() - start

        if frame.index in self._strip_indices:
            if rgb is None and config.baseline:
                rgb = self._decode_rgb(frame.msg)   # the source topic is the camera's
            elif rgb is None:
                rgb = self._camera_image(frame.stamp_ns, tolerance_ns)
            result.qualitative.append(QualitativeFrame(frame.stamp_ns, rgb, gt, pred))

    def _skip_transform(self, error: TransformError, stamp_ns: int,
                        result: EvaluationResult) -> None:
        self._transform_error = error
        result.skip('no LiDAR -> camera transform yet (/tf_static not received before '
                    'this frame)' if not self._tf_static_seen else
                    f'no LiDAR -> camera transform: {error}', stamp_ns)

    @staticmethod
    def _camera_before(infos, stamp_ns: int, what: str, result: EvaluationResult):
        """(CameraInfo, CameraModel) nearest the frame, or (None, None) with the frame skipped."""
        from monodepth_ros.io.messages import camera_info_to_model

        info = _nearest_within(infos, stamp_ns)
        if info is None:
            result.skip(f'no {what} received before the frame', stamp_ns)
            return None, None
        try:
            return info, camera_info_to_model(info)
        except FRAME_ERRORS as error:
            result.skip(f'bad {what}: {error}', stamp_ns)
            return None, None

    def _breakdowns(self, gt_values, pred_values, label_values, cap,
                    result: EvaluationResult) -> None:
        """Distance bands, error histogram and classes from the graded pixels of one cap."""
        config = self.config
        pred_values, _ = prepare_prediction(gt_values, pred_values, config.min_depth, cap,
                                            config.median_scaling)
        result.by_distance.add(distance_band_index(gt_values, self._edges), gt_values,
                               pred_values)
        histogram, _ = np.histogram(pred_values - gt_values, bins=HISTOGRAM_EDGES)
        result.histogram += histogram
        if label_values is not None:
            if result.by_class is None:
                result.by_class = GroupedErrors(self._class_names())
            result.by_class.add(label_values.astype(np.int64), gt_values, pred_values)

    def _class_names(self) -> list[str]:
        if self.pipeline is not None and getattr(self.pipeline, 'metadata', None) is not None:
            names = list(getattr(self.pipeline.metadata, 'class_names', []) or [])
            if names:
                return names
        from monodepth_ros.model.semantics import CITYSCAPES_CLASSES

        return list(CITYSCAPES_CLASSES)

    def _label_image(self, stamp_ns: int) -> np.ndarray | None:
        from monodepth_ros.io.messages import image_to_array

        msg = _nearest_within(self._labels, stamp_ns, int(self.config.max_time_diff_ms * 1e6))
        if msg is None:
            return None
        labels = image_to_array(msg)
        return labels if labels.ndim == 2 else None

    def _camera_image(self, stamp_ns: int, tolerance_ns: int) -> np.ndarray | None:
        msg = _nearest_within(self._images, stamp_ns, tolerance_ns)
        return None if msg is None else self._decode_rgb(msg)

    @staticmethod
    def _decode_rgb(msg) -> np.ndarray | None:
        from monodepth_ros.runtime.pipeline import decode_image

        try:
            return decode_image(msg)
        except MonodepthError:
            return None
