"""Run the depth model on image files.

For each IMAGE, writes into --out: NAME_depth.png (16-bit, millimetres, 0 = invalid),
NAME_depth.npy (float32 metres, NaN = invalid), NAME_depth_color.png (inverse depth through
the magma colour map, spanning each image's own 2nd to 98th percentile of inverse depth over
its valid pixels: near is bright, far is dark, invalid is black; the colours of two images
are not comparable), NAME_semantics.png (Cityscapes colours), NAME_labels.png (trainIds; both
only for a model with semantics)
and, when the intrinsics are given (--fx --fy --cx --cy or --camera-info), NAME.ply (coloured
points in the camera optical frame: x right, y down, z forward). Intrinsics are those of the
image as read; outputs are at the image size unless --output-resolution network.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from monodepth_ros.errors import CalibrationError, ConfigError, DatasetError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.model.cards import add_model_card_argument
from monodepth_ros.options import finite_float, positive_float, positive_int

LOGGER = logging.getLogger(__name__)


# -- engine and model -------------------------------------------------------------------------
def add_model_arguments(parser) -> None:
    """--model/--backend/--precision/--engine-cache-dir, shared with infer-bag and demo."""
    parser.add_argument('--model', '-m', default=None,
                        help='model file (.onnx or .pt checkpoint); default: the packaged '
                        'default model')
    from monodepth_ros.engines import BACKENDS, PRECISIONS

    parser.add_argument('--backend', default='auto', choices=BACKENDS,
                        help='inference backend (default: auto, the fastest available)')
    parser.add_argument('--precision', default='fp16', choices=PRECISIONS,
                        help='TensorRT precision (CPU backends run fp32)')
    parser.add_argument('--engine-cache-dir', default=None,
                        help='folder of cached TensorRT engines; ONNX exports of .pt '
                        'checkpoints go to <folder>/onnx (default: $MONODEPTH_ENGINE_CACHE, '
                        'else ~/.cache/monodepth_ros/engines)')
    add_model_card_argument(parser)


def add_framing_arguments(parser) -> None:
    """--framing/--framing-anchor/--far-pass-focal/--ground-contact: the node's parameters.

    infer, infer-bag, eval-bag, compare and adapt take them.
    """
    from monodepth_ros.io.framing import DEFAULT_ANCHOR, DEFAULT_FRAMING, FRAMING_MODES
    from monodepth_ros.runtime.far_pass import DEFAULT_FAR_PASS_FOCAL

    parser.add_argument('--framing', choices=FRAMING_MODES, default=DEFAULT_FRAMING,
                        help='how images reach the network input, never stretched: '
                        "canonical-fit (default: scaled to the model's canonical focal length, "
                        'but no smaller than the whole image fitting the input and no larger '
                        'than fit-width; fit-width without a calibration, for a model with no '
                        'canonical focal length and for a foreign model card), fit-width '
                        '(scaled to the network width, rows cropped around the principal point '
                        "or padded) or canonical-focal (scaled to the model's canonical focal "
                        'length, then cropped or padded both ways)')
    parser.add_argument('--framing-anchor', type=finite_float(0.0, 1.0), default=DEFAULT_ANCHOR,
                        help='where the principal point row lands in the network input, as a '
                        f'fraction of its height, 0 (top) .. 1 (bottom) (default {DEFAULT_ANCHOR}'
                        ": KITTI's, the band around a level camera's horizon)")
    parser.add_argument('--far-pass-focal', type=finite_float(0.0), default=DEFAULT_FAR_PASS_FOCAL,
                        help='our camera-aware models run a second, zoomed pass around the '
                        'principal point for the far field, at this focal length at the network '
                        "input in multiples of the model's canonical one (default "
                        f'{DEFAULT_FAR_PASS_FOCAL}); it is skipped when that zooms less than '
                        '1.25x over the first pass; both views run as one batch of two (one '
                        'after the other on TensorRT); 0 turns it off (one image per frame)')
    parser.add_argument('--ground-contact', action=argparse.BooleanOptionalAction, default=True,
                        help='our models: put vehicles and people within 10 m at the depth of '
                        'the road where they touch it (the road plane fitted to the predicted '
                        'road; default on, --no-ground-contact turns it off)')


def add_scale_arguments(parser, lidar: bool) -> None:
    """--scale, --camera-height, --scale-value/--scale-shift, --no-scale-smoothing.

    ``lidar``: the command has a LiDAR to fit to (eval-bag, compare), so 'lidar' is offered.
    """
    from monodepth_ros.runtime.scale import SCALE_MODES

    modes = [mode for mode in SCALE_MODES if lidar or mode != 'lidar']
    parser.add_argument('--scale', choices=modes, default='auto',
                        help='metres from a relative or mis-scaled model: none (the model is '
                        'metric), fixed (--scale-value, --scale-shift), '
                        + ('lidar (fitted per frame to the LiDAR), ' if lidar else '')
                        + 'ground (from --camera-height and the fitted ground plane); auto '
                        '(default): none for metric models, '
                        + ('lidar for affine ones' if lidar else 'ground for affine ones with '
                           '--camera-height'))
    parser.add_argument('--camera-height', type=finite_float(0.0, 100.0, low_open=True),
                        default=None, help="with --scale ground: the camera's height above "
                        'the ground (m, > 0)')
    parser.add_argument('--scale-value', type=finite_float(0.0, 1e6, low_open=True),
                        default=1.0, help="with --scale fixed: s in the model's space "
                        '(metres = s * d + t, or 1 / metres for inverse-depth models)')
    parser.add_argument('--scale-shift', type=finite_float(-1e6, 1e6), default=0.0,
                        help='with --scale fixed: t (default 0)')
    parser.add_argument('--no-scale-smoothing', action='store_true',
                        help="use each frame's own fit (default: smoothed over frames, robust, "
                        'reset on a lasting jump)')


def scale_settings(args, lidar: bool = False):
    """The ScaleSettings of parsed ``add_scale_arguments`` options."""
    from monodepth_ros.runtime.scale import ScaleSettings

    return ScaleSettings(args.scale, args.camera_height, args.scale_value, args.scale_shift,
                         not args.no_scale_smoothing, lidar)


def load_engine(model, backend='auto', precision='fp16', cache_dir=None, card=None):
    """create_engine on ``model`` or, when None, the packaged default model.

    ``card``: the model card of a foreign ONNX model (--model-card), None for ours.
    """
    from monodepth_ros.engines import create_engine
    from monodepth_ros.errors import ModelFileError
    from monodepth_ros.model.files import default_model_path

    if model is None:
        model = default_model_path()
        if not model.is_file():
            raise ModelFileError(
                f'no --model given and the packaged default model {model} is missing; train '
                'one (see monodepth_ros/models/README.md) or run "monodepth demo"')
    engine = create_engine(str(model), backend=backend, precision=precision,
                           cache_dir=cache_dir, card=card)
    LOGGER.info('model %s: %s %s, input %s', model, engine.name, engine.precision,
                engine.card.size_text())
    missing = [name for name, tensor in (('semantics', engine.card.semantics_output),
                                         ('confidence', engine.card.confidence_output))
               if not tensor]
    if missing:
        LOGGER.info('model %s has no %s output: not produced', model, ' and no '.join(missing))
    return engine


# -- calibration ------------------------------------------------------------------------------
def read_camera_info_yaml(path) -> CameraModel:
    """A camera_calibration / camera_info_manager YAML file (image_width, camera_matrix, ...)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CalibrationError(f'cannot read camera info YAML {path}: {error}') from error

    def matrix(key, size, required=True):
        entry = (data or {}).get(key)
        if entry is None:
            if required:
                raise CalibrationError(f'camera info YAML {path} lacks {key!r} (expected the '
                                       'camera_calibration format)')
            return None
        values = entry.get('data') if isinstance(entry, dict) else entry
        values = np.asarray(values, dtype=np.float64).ravel()
        if size and values.size != size:
            raise CalibrationError(f'{path}: {key} has {values.size} values, expected {size}')
        return values

    try:
        width, height = int(data['image_width']), int(data['image_height'])
    except (KeyError, TypeError, ValueError) as error:
        raise CalibrationError(f'camera info YAML {path} lacks image_width/image_height '
                               f'({error})') from error
    K = matrix('camera_matrix', 9)
    P = matrix('projection_matrix', 12, required=False)
    if P is None:
        P = np.hstack([K.reshape(3, 3), np.zeros((3, 1))])
    D = matrix('distortion_coefficients', 0, required=False)
    R = matrix('rectification_matrix', 9, required=False)
    return CameraModel(width=width, height=height, K=K, P=P,
                       D=np.zeros(5) if D is None else D,
                       R=np.eye(3) if R is None else R,
                       distortion_model=str(data.get('distortion_model', 'plumb_bob')))


def camera_from_args(args, width: int, height: int, yaml_camera=None) -> CameraModel | None:
    """The calibration given on the command line (``yaml_camera``: --camera-info already read)."""
    values = (args.fx, args.fy, args.cx, args.cy)
    given = [value is not None for value in values]
    if args.camera_info and any(given):
        raise ConfigError('give either --camera-info or --fx/--fy/--cx/--cy, not both')
    if args.camera_info:
        return yaml_camera or read_camera_info_yaml(args.camera_info)
    if any(given) and not all(given):
        raise ConfigError('--fx, --fy, --cx and --cy go together; some are missing')
    if all(given):
        return CameraModel.from_intrinsics(args.fx, args.fy, args.cx, args.cy, width, height)
    return None


# -- output files -----------------------------------------------------------------------------
def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """Metres (NaN invalid) -> uint16 millimetres (0 invalid, saturating at 65.535 m)."""
    from monodepth_ros.io.messages import depth_to_millimetres

    return depth_to_millimetres(depth)


# Percentiles of the valid pixels' inverse depth that span the colour map of *_depth_color.png.
COLOR_PERCENTILES = (2.0, 98.0)


def colorize_depth(depth: np.ndarray, percentiles=COLOR_PERCENTILES) -> np.ndarray:
    """HxWx3 uint8 RGB: inverse depth through the magma colour map, invalid pixels black.

    The map spans this image's own range: inverse depth from its low to its high percentile
    over the valid pixels (finite, > 0) goes to colours 0..255, values beyond are clipped, so
    a 5-50 m street uses the whole map whatever the model's depth range (one outlier does not
    squeeze it). An image of one depth gets the middle colour.
    """
    valid = np.isfinite(depth) & (depth > 0)
    level = np.zeros(depth.shape, dtype=np.uint8)
    if valid.any():
        inverse = 1.0 / depth[valid].astype(np.float64)
        low, high = np.percentile(inverse, percentiles)
        if high > low:
            scaled = np.clip((inverse - low) / (high - low), 0.0, 1.0)
        else:
            scaled = np.full(inverse.shape, 0.5)
        level[valid] = np.rint(scaled * 255).astype(np.uint8)
    bgr = cv2.applyColorMap(level, cv2.COLORMAP_MAGMA)
    bgr[~valid] = 0
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_ply(path, xyz: np.ndarray, rgb: np.ndarray) -> int:
    """Binary little-endian PLY of the finite points; returns how many were written."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    vertex = np.empty(int(keep.sum()), dtype=[('x', '<f4'), ('y', '<f4'), ('z', '<f4'),
                                              ('red', 'u1'), ('green', 'u1'), ('blue', 'u1')])
    for axis, name in enumerate('xyz'):
        vertex[name] = xyz[keep, axis]
    for channel, name in enumerate(('red', 'green', 'blue')):
        vertex[name] = rgb[keep, channel]
    header = ('ply\nformat binary_little_endian 1.0\ncomment monodepth_ros camera optical '
              f'frame (x right, y down, z forward), metres\nelement vertex {len(vertex)}\n'
              'property float x\nproperty float y\nproperty float z\n'
              'property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n')
    with open(path, 'wb') as stream:
        stream.write(header.encode('ascii'))
        stream.write(vertex.tobytes())
    return len(vertex)


def read_rgb(path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f'cannot read image {path} (missing, or not a PNG/JPEG/... file)')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_outputs(out_dir: Path, name: str, result) -> list[Path]:
    """Write the files of one image (see the module docstring); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def save_png(suffix, image_rgb_or_gray):
        path = out_dir / f'{name}{suffix}'
        image = image_rgb_or_gray
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(path), image):
            raise DatasetError(f'cannot write {path}')
        written.append(path)

    save_png('_depth.png', depth_to_png16(result.depth))
    np.save(out_dir / f'{name}_depth.npy', result.depth)
    written.append(out_dir / f'{name}_depth.npy')
    save_png('_depth_color.png', colorize_depth(result.depth))
    if result.semantics is not None:   # a model without semantics has none to write
        save_png('_semantics.png', result.semantics_color)
        save_png('_labels.png', result.semantics)
    if result.points is not None:
        path = out_dir / f'{name}.ply'
        write_ply(path, result.points['xyz'], result.points['rgb'])
        written.append(path)
    return written


# -- command ----------------------------------------------------------------------------------
LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)


def add_arguments(parser) -> None:
    parser.add_argument('images', nargs='+', metavar='IMAGE', help='image files (PNG, JPEG...)')
    parser.add_argument('--out', '-o', required=True, help='folder for the output files')
    add_model_arguments(parser)
    parser.add_argument('--fx', type=positive_float,
                        help='focal length x (pixels, of the image; > 0)')
    parser.add_argument('--fy', type=positive_float, help='focal length y (pixels; > 0)')
    parser.add_argument('--cx', type=finite_float(), help='principal point x (pixels)')
    parser.add_argument('--cy', type=finite_float(), help='principal point y (pixels)')
    parser.add_argument('--camera-info', default=None,
                        help='camera_calibration YAML (image_width, camera_matrix, '
                        'projection_matrix...) instead of --fx/--fy/--cx/--cy')
    parser.add_argument('--output-resolution', choices=('camera', 'network'), default='camera',
                        help='write outputs at the image size (default) or the network size')
    parser.add_argument('--depth-upsampling', choices=('nearest', 'bilinear'),
                        default='bilinear', help='depth resize to the image size')
    parser.add_argument('--cloud-stride', type=positive_int, default=1,
                        help='PLY: every n-th pixel (>= 1)')
    parser.add_argument('--max-range', type=positive_float, default=80.0,
                        help='PLY: farthest depth (m, > 0)')
    add_framing_arguments(parser)
    add_scale_arguments(parser, lidar=False)


def run(args) -> int:
    from tqdm import tqdm

    from monodepth_ros.runtime.pipeline import ALL_OUTPUTS, DepthPipeline, PipelineConfig

    config = PipelineConfig(output_resolution=args.output_resolution,
                            depth_upsampling=args.depth_upsampling,
                            cloud_stride=args.cloud_stride, cloud_max_range=args.max_range,
                            framing=args.framing, framing_anchor=args.framing_anchor,
                            far_pass_focal=args.far_pass_focal,
                            ground_contact=args.ground_contact, scale=scale_settings(args))
    for image in args.images:
        if not Path(image).is_file():
            raise DatasetError(f'image {image} does not exist')
    engine = load_engine(args.model, args.backend, args.precision, args.engine_cache_dir,
                         args.model_card)
    pipeline = DepthPipeline(engine, config)
    pipeline.resolved_scale_mode()   # an affine model with no way to metres: one line, now
    out_dir = Path(args.out)
    names = [Path(image).stem for image in args.images]
    if len(set(names)) != len(names):
        # Same stem in different folders: number them so no file is overwritten.
        names = [f'{index:04d}_{name}' for index, name in enumerate(names)]
    yaml_camera = read_camera_info_yaml(args.camera_info) if args.camera_info else None
    count = 0
    for image, name in tqdm(list(zip(args.images, names)), desc='infer', unit='image',
                            disable=True if args.no_progress else None):
        rgb = read_rgb(image)
        camera = camera_from_args(args, rgb.shape[1], rgb.shape[0], yaml_camera)
        outputs = set(ALL_OUTPUTS) if camera is not None else ALL_OUTPUTS - {'points',
                                                                              'camera_info'}
        result = pipeline.process_arrays(rgb, camera, outputs)
        files = write_outputs(out_dir, name, result)
        count += 1
        LOGGER.debug('%s -> %s', image, ', '.join(str(path) for path in files))
    print(f'wrote the outputs of {count} image(s) to {out_dir}')
    return 0
