"""Build (or find in the cache) the TensorRT engine for a model, before a mission.

The engine is cached per ONNX file, TensorRT version, GPU, precision and input size, so the
node starts at once afterwards. A ``.pt`` checkpoint is exported to ONNX first. Prints the
engine path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monodepth_ros.errors import DatasetError, EngineError
from monodepth_ros.model.files import check_model_path, is_onnx
from monodepth_ros.model.preprocess import preprocess

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')


def add_arguments(parser) -> None:
    from monodepth_ros.model.cards import add_model_card_argument
    from monodepth_ros.options import finite_float, positive_int

    parser.add_argument('model', help='ONNX file written by "monodepth export" (or a .pt '
                        'checkpoint, exported first; or a foreign ONNX with --model-card, '
                        'fixed input size only)')
    parser.add_argument('--precision', choices=('fp16', 'fp32', 'int8'), default='fp16',
                        help='engine precision (int8 needs NVIDIA ModelOpt and '
                        '--calibration-images; default: fp16)')
    parser.add_argument('--cache-dir', default=None,
                        help='engine cache folder (default: $MONODEPTH_ENGINE_CACHE or '
                        '~/.cache/monodepth_ros/engines)')
    parser.add_argument('--workspace-gb', type=finite_float(0.0, 1024.0, low_open=True),
                        default=4.0,
                        help='TensorRT builder workspace limit in GiB, > 0 and <= 1024 '
                        '(default: 4)')
    parser.add_argument('--calibration-images', default=None,
                        help='folder of images like the deployment ones, for int8')
    parser.add_argument('--max-calibration-images', type=positive_int, default=200,
                        help='use at most this many calibration images, >= 1 (default: 200)')
    parser.add_argument('--device', default='cuda', help='CUDA device (default: cuda)')
    add_model_card_argument(parser)


def load_calibration_batch(folder, metadata, limit: int = 200) -> np.ndarray:
    """(N,3,H,W) float32 network inputs from the images in ``folder``."""
    import cv2

    folder = Path(folder)
    files = sorted(p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f'no calibration images ({", ".join(IMAGE_SUFFIXES)}) in {folder}')
    step = max(1, len(files) // limit)   # spread over the whole sequence
    batches = []
    for path in files[::step][:limit]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f'calibration image {path} cannot be read')
        rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                         (metadata.input_width, metadata.input_height),
                         interpolation=cv2.INTER_AREA)
        batches.append(preprocess(rgb, metadata))
    return np.concatenate(batches, axis=0)


def run(args) -> int:
    from monodepth_ros.engines import check_card_target, ensure_onnx
    from monodepth_ros.engines.tensorrt_engine import TensorRTEngine, tensorrt_status
    from monodepth_ros.model.files import load_onnx_model, read_onnx_metadata

    path = check_model_path(args.model)
    usable, reason = tensorrt_status()
    if not usable:
        raise EngineError(f'cannot build a TensorRT engine for {path}: {reason} (TensorRT '
                          'and a CUDA GPU are needed; ONNX Runtime runs the .onnx file without)')
    check_card_target(path, args.model_card)
    onnx_path = path if is_onnx(path) else ensure_onnx(path, args.cache_dir)
    calibration = None
    if args.precision == 'int8':
        if not args.calibration_images:
            raise EngineError('--precision int8 needs --calibration-images DIR')
        metadata = read_onnx_metadata(load_onnx_model(onnx_path), str(onnx_path))
        calibration = load_calibration_batch(args.calibration_images, metadata,
                                             args.max_calibration_images)
    engine = TensorRTEngine(onnx_path, precision=args.precision, cache_dir=args.cache_dir,
                            device=args.device, workspace_gb=args.workspace_gb,
                            calibration_data=calibration, card=args.model_card)
    info = engine.info
    print(f'{info["engine_file"]} ({info["engine_cache"]}: {info["engine_cache_reason"]}; '
          f'TensorRT {info["tensorrt_version"]}, {info["gpu"]}, {engine.precision})')
    engine.close()
    return 0
