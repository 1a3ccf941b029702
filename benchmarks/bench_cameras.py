"""Depth on any camera: real cars side by side, the synthetic camera sweep, framing time.

1. Pre-processing of one 1920x1080 frame to the 320x96 network input: the framing (uniform
   scale, crop or padding; :mod:`monodepth_ros.io.framing`) beside the stretch it replaced
   (one cv2.resize to 320x96), medians over the same frames, measured side by side; the
   far pass's own framing (:mod:`monodepth_ros.runtime.far_pass`) of the same frame through a
   60-degree lens, which the pipeline adds for our camera-aware models; and the pipeline's
   whole pre-processing stage (framing and normalisation) with one pass and with the far
   pass, on that camera (the figure the 2 ms target is about) and on KITTI's.
2. Real cameras, graded against their LiDAR at 80 m (validation only, never trained on): the
   two DDAD bags in ../shared/data/ddad (1936x1216, fx about 2170 px; default protocol) and
   the KITTI excerpt, drive 0009 frames 0-9 (kitti-eigen protocol, Garg crop, as
   ``bench_sim2real.py``); the model next to the row prior (leave-one-out, no image).
   ``coverage`` is the share of LiDAR pixels the model predicts (the framing crops rows).
3. The synthetic camera sweep (:mod:`monodepth_ros.evaluation.cameras`): hold-out scenes
   through five cameras, exact ground truth.

Every framing runs with the pipeline's ground-contact stage
(:mod:`monodepth_ros.runtime.ground_contact`, on by default); ``--without-ground-contact``
grades each a second time without it.

    .venv/bin/python benchmarks/bench_cameras.py
    .venv/bin/python benchmarks/bench_cameras.py --model runs/x/model.pt \
        --framing canonical-fit fit-width canonical-focal --without-ground-contact
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_sim2real import DRIVE, KITTI_DATE
from bench_sim2real import evaluate as evaluate_kitti

REPO = Path(__file__).resolve().parents[1]
DDAD = REPO.parent / 'shared' / 'data' / 'ddad'
DDAD_SCENES = ('ddad_scene_01', 'ddad_scene_02')
DDAD_TOPICS = {'camera_topic': '/ddad/CAMERA_01/image_raw/compressed',
               'camera_info_topic': '/ddad/CAMERA_01/camera_info',
               'lidar_topic': '/ddad/lidar/points'}


def preprocessing_times(repeats: int, canonical_focal: float) -> tuple[float, float, float, float]:
    """Median ms per 1920x1080 frame (framing, stretch, far window) and the far pass's zoom.

    A 60-degree lens, the default framing and its far window, for a model of
    ``canonical_focal``.
    """
    import cv2
    import numpy as np

    from monodepth_ros.evaluation.cameras import SWEEP_CAMERAS
    from monodepth_ros.io.framing import DEFAULT_ANCHOR, DEFAULT_FRAMING, plan_framing
    from monodepth_ros.runtime.far_pass import (
        DEFAULT_FAR_PASS_FOCAL,
        far_pass_zoom,
        plan_far_window,
    )

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(4)]
    camera = SWEEP_CAMERAS['1920x1080, 60 deg']
    first = plan_framing(1920, 1080, (320, 96), camera, DEFAULT_FRAMING,
                         canonical_focal=canonical_focal)
    zoom = far_pass_zoom(DEFAULT_FAR_PASS_FOCAL, canonical_focal, first.camera(camera))
    far = plan_far_window(first, zoom, camera, DEFAULT_ANCHOR) if zoom else None
    framing_ms, stretch_ms, far_ms = [], [], []
    for i in range(repeats):
        rgb = frames[i % len(frames)]
        start = time.perf_counter()
        first.apply(rgb)
        middle = time.perf_counter()
        cv2.resize(rgb, (320, 96), interpolation=cv2.INTER_AREA)
        end = time.perf_counter()
        if far is not None:
            far.apply(rgb)
        far_ms.append((time.perf_counter() - end) * 1e3)
        framing_ms.append((middle - start) * 1e3)
        stretch_ms.append((end - middle) * 1e3)
    return (statistics.median(framing_ms), statistics.median(stretch_ms),
            statistics.median(far_ms), zoom)


def pipeline_preprocess_ms(engine, frames: int, framings: list[str]) -> dict:
    """Median of the pipeline's own pre-processing stage, {(camera, framing): (one pass, far)}.

    The stage as the node runs it: the framing of the image (and, for our camera-aware
    models, of the far window) and the normalisation into the network's input tensors; all
    configurations take turns frame by frame.
    """
    import numpy as np

    from monodepth_ros.evaluation.cameras import SWEEP_CAMERAS
    from monodepth_ros.runtime.far_pass import DEFAULT_FAR_PASS_FOCAL
    from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

    rng = np.random.default_rng(0)
    pipelines = {(framing, far): DepthPipeline(engine, PipelineConfig(framing=framing,
                                                                       far_pass_focal=far))
                 for framing in framings for far in (0.0, DEFAULT_FAR_PASS_FOCAL)}
    medians = {}
    for name in ('1920x1080, 60 deg', 'KITTI 1242x375'):
        camera = SWEEP_CAMERAS[name]
        images = [rng.integers(0, 256, (camera.height, camera.width, 3), dtype=np.uint8)
                  for _ in range(4)]
        stage_ms = {key: [] for key in pipelines}
        for i in range(frames):
            for key, pipeline in pipelines.items():
                result = pipeline.process_arrays(images[i % len(images)], camera,
                                                 outputs={'depth'})
                stage_ms[key].append(result.timings['preprocess'])
        for framing in framings:
            medians[name, framing] = tuple(statistics.median(stage_ms[framing, far])
                                           for far in (0.0, DEFAULT_FAR_PASS_FOCAL))
    return medians


def evaluate_ddad(scene: str, **kwargs) -> dict:
    from monodepth_ros.evaluation.evaluator import BagEvaluator, EvaluationConfig

    config = EvaluationConfig(qualitative_frames=0, progress=False, **DDAD_TOPICS, **kwargs)
    result = BagEvaluator(config).evaluate(DDAD / scene)
    if result.error is not None:
        raise result.error
    return dict(result.summary()['cap_80'], frames=result.frames_evaluated)


def row(bag: str, depth: str, metrics: dict) -> str:
    return (f'| {bag} | {depth} | {metrics["frames"]} | {metrics["abs_rel"]:.3f} | '
            f'{metrics["rmse"]:.3f} | {metrics["delta1"]:.3f} | {metrics["coverage"]:.3f} |')


def variants(framings: list[str], without_contact: bool) -> list[tuple[str, dict]]:
    """(name, pipeline settings) of each framing, and without ground contact when asked."""
    contact = (True, False) if without_contact else (True,)
    return [(framing if on else f'{framing}, no ground contact',
             {'framing': framing, 'ground_contact': on})
            for framing in framings for on in contact]


def real_cameras(model: str, framings: list[str], without_contact: bool) -> None:
    from monodepth_ros.bagtools.kitti2bag import convert

    print('| bag | depth | frames | abs_rel | rmse | delta1 | coverage |\n'
          '|---|---|---|---|---|---|---|')
    depths = [(f'model, {name}', {'model': model, 'backend': 'onnxruntime', **settings})
              for name, settings in variants(framings, without_contact)]
    depths.append(('row prior', {'baseline': 'row-prior'}))
    means = {}
    for name, kwargs in depths:
        per_scene = [evaluate_ddad(scene, **kwargs) for scene in DDAD_SCENES]
        for scene, metrics in zip(DDAD_SCENES, per_scene):
            print(row(scene, name, metrics))
        means[name] = tuple(sum(m[key] for m in per_scene) / len(per_scene)
                            for key in ('abs_rel', 'delta1'))
    if DRIVE.is_dir():
        with tempfile.TemporaryDirectory() as work:
            bag = Path(work) / 'kitti_0009'
            convert(DRIVE, bag, progress=False)
            for name, kwargs in depths:
                print(row('KITTI 0009, frames 0-9', name, evaluate_kitti(bag, **kwargs)))
    else:
        print(f'(KITTI excerpt not found at {DRIVE}: skipped)')
    print()
    for name, (abs_rel, delta1) in means.items():
        print(f'DDAD mean, {name}: abs_rel {abs_rel:.3f}, delta1 {delta1:.3f}')
    print(f'(KITTI folder {KITTI_DATE})')


def synthetic_sweep(model: str, framings: list[str], without_contact: bool) -> None:
    from monodepth_ros.evaluation.cameras import SWEEP_CAMERAS, camera_sweep_metrics
    from monodepth_ros.io.framing import plan_framing
    from monodepth_ros.runtime.infer import load_engine
    from monodepth_ros.runtime.pipeline import DepthPipeline, PipelineConfig

    engine = load_engine(model, backend='onnxruntime')
    metadata = engine.metadata
    network_size = (metadata.input_width, metadata.input_height)
    print("| framing | camera | focal at the input / KITTI's | abs_rel | delta1 | "
          'median pred/gt | coverage |\n|---|---|---|---|---|---|---|')
    kitti_focal = 721.5377 / 1242
    for variant, settings in variants(framings, without_contact):
        pipeline = DepthPipeline(engine, PipelineConfig(output_resolution='camera', **settings))
        for name, camera in SWEEP_CAMERAS.items():
            metrics = camera_sweep_metrics(pipeline, camera)
            framing = plan_framing(camera.width, camera.height, network_size, camera,
                                   settings['framing'], canonical_focal=metadata.canonical_focal)
            relative = framing.camera(camera).fx / network_size[0] / kitti_focal
            print(f'| {variant} | {name} | {relative:.2f} | {metrics["abs_rel"]:.3f} | '
                  f'{metrics["delta1"]:.3f} | {metrics["median_ratio"]:.3f} | '
                  f'{metrics["coverage"]:.3f} |')


def main() -> int:
    from monodepth_ros.io.framing import DEFAULT_FRAMING, FRAMING_MODES

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', type=Path, default=None,
                        help='.pt or .onnx model (default: the packaged default model)')
    parser.add_argument('--framing', nargs='+', default=[DEFAULT_FRAMING], choices=FRAMING_MODES,
                        help=f'framing modes to compare (default: {DEFAULT_FRAMING})')
    parser.add_argument('--repeats', type=int, default=200,
                        help='frames timed for the pre-processing figure (default 200)')
    parser.add_argument('--pipeline-frames', type=int, default=60,
                        help="frames run through the pipeline for its pre-processing stage's "
                             'time (default 60)')
    parser.add_argument('--without-ground-contact', action='store_true',
                        help='grade each framing also without the ground-contact stage')
    parser.add_argument('--skip-real', action='store_true', help='no DDAD / KITTI grading')
    parser.add_argument('--skip-sweep', action='store_true', help='no synthetic sweep')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format='[%(levelname)s] %(name)s: %(message)s')
    from monodepth_ros.model.files import default_model_path

    model = str(args.model or default_model_path())
    from monodepth_ros.engines import create_engine

    with create_engine(model, backend='onnxruntime') as engine:
        canonical_focal = engine.metadata.canonical_focal
        framing_ms, stretch_ms, far_ms, zoom = preprocessing_times(args.repeats,
                                                                   canonical_focal)
        stage_ms = pipeline_preprocess_ms(engine, args.pipeline_frames, args.framing)
    print(f'pre-processing of a 1920x1080 frame to 320x96 (median of {args.repeats}): '
          f'framing {framing_ms:.2f} ms, stretch {stretch_ms:.2f} ms (framing / stretch '
          f'{framing_ms / stretch_ms:.2f}); the far pass adds its framing, {far_ms:.2f} ms '
          f'(60-degree lens, zoom {zoom:.2f})')
    print(f"the pipeline's pre-processing stage (framing and normalisation, median of "
          f'{args.pipeline_frames} frames, one pass and far pass taking turns):')
    for (name, framing), (one_pass, far_pass) in stage_ms.items():
        verdict = ''
        if name.startswith('1920x1080') and framing == DEFAULT_FRAMING:
            verdict = f' (target <= 2 ms: {"met" if far_pass <= 2.0 else "NOT met"})'
        print(f'  {name}, {framing}: one pass {one_pass:.2f} ms, far pass {far_pass:.2f} ms'
              f'{verdict}')
    print()
    print(f'model {model}\n')
    if not args.skip_real:
        if not DDAD.is_dir():
            print(f'DDAD bags not found at {DDAD}', file=sys.stderr)
            return 1
        real_cameras(model, args.framing, args.without_ground_contact)
        print()
    if not args.skip_sweep:
        synthetic_sweep(model, args.framing, args.without_ground_contact)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
