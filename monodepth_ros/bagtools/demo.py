"""The whole job on a synthetic drive, with no ROS and no download.

1. ``synth-bag``: a KITTI-like drive (camera, CameraInfo, LiDAR, TF) from a world seed that
   training never saw;
2. the default model (monodepth_ros/models/default.pt; when it is missing, a tiny one is
   trained on the spot for a couple of minutes, with a warning);
3. ``infer-bag``: the depth pipeline on every frame, outputs (and the input topics) in a new
   rosbag2 that ``ros2 bag play`` replays into RViz or Foxglove;
4. ``eval-bag``: depth graded against the LiDAR with the KITTI metrics; report in DIR/report.

Each step runs the same code as its own ``monodepth`` command. DIR/drive, DIR/drive_depth and
DIR/report are replaced when an earlier demo made them; a path there holding anything else is
refused before any work and left untouched. A failed or interrupted demo leaves none of the
three.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from monodepth_ros.errors import ConfigError, MonodepthError
from monodepth_ros.io import topics
from monodepth_ros.io.outputs import check_output, remove_own_output

LOGGER = logging.getLogger(__name__)

# Training uses seeds 100-115 (depth), 200-207 (semantics) and 900-901 (validation).
DEMO_SEED = 42
RECIPE = Path('training') / 'configs' / 'synthetic_quick.yaml'
# A few minutes on a 2-core CPU: fewer drives and steps than the full quick recipe.
QUICK_TRAINING_OVERRIDES = (
    'data.depth.seeds=[100,101,102,103]', 'data.depth.frames_per_seed=16',
    'data.semantic.seeds=[200,201]', 'data.semantic.frames_per_seed=16',
    'data.val.seeds=[900]', 'data.val.frames_per_seed=4', 'steps=300', 'phase2_steps=75',
    'val_every=300', 'val_frames=4', 'checkpoint_every=300',
)


# The commands the demo runs (modules below this one).
COMMAND_MODULES = {
    'synth-bag': 'monodepth_ros.bagtools.synth_bag',
    'train': 'monodepth_ros.training.cli',
    'infer-bag': 'monodepth_ros.bagtools.infer_bag',
    'eval-bag': 'monodepth_ros.evaluation.cli',
}


def _run_command(argv: list[str], progress: bool = True) -> None:
    """Run one ``monodepth`` subcommand; a failure stops the demo with that command's error."""
    import importlib

    from monodepth_ros.command import build_parser

    module = importlib.import_module(COMMAND_MODULES[argv[0]])
    options = argv[1:] if progress else ['--no-progress', *argv[1:]]
    args = build_parser(argv[0], module).parse_args(options)
    status = int(module.run(args) or 0)
    if status != 0:
        raise MonodepthError(f'"monodepth {" ".join(argv)}" ended with status {status}')


def find_recipe() -> Path:
    """The quick training recipe in a source checkout or in the installed share folder."""
    candidates = [Path(__file__).resolve().parents[2] / RECIPE]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('monodepth_ros')) / RECIPE)
    except (ImportError, LookupError):
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f'training recipe {RECIPE} not found (looked in '
                      f'{", ".join(str(p) for p in candidates)})')


def train_quick_model(out_dir: Path, minutes: float, progress: bool = True) -> Path:
    """Train a tiny model on the synthetic world for about ``minutes``; returns model.pt."""
    run_dir = out_dir / 'training'
    LOGGER.warning('no default model at %s: training a tiny one for about %.1f minutes '
                   '(results will be rough; see monodepth_ros/models/README.md for the '
                   'committed one)', default_model(), minutes)
    _run_command(['train', '--config', str(find_recipe()), '--output-dir', str(run_dir),
                  '--max-minutes', str(minutes), *QUICK_TRAINING_OVERRIDES], progress)
    model = run_dir / 'model.pt'
    if not model.is_file():
        raise MonodepthError(f'training finished without writing {model}')
    return model


def default_model() -> Path:
    from monodepth_ros.model.files import default_model_path
    return default_model_path()


LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)


def add_arguments(parser) -> None:
    from monodepth_ros.bagtools.options import add_bag_format_arguments
    from monodepth_ros.options import positive_float, positive_int, seed_int

    parser.add_argument('--out', default='demo_output', type=Path,
                        help='folder for the bags and the report (default ./demo_output); '
                        "an earlier demo's outputs there are replaced, other files kept")
    parser.add_argument('--frames', type=positive_int, default=20,
                        help='frames of the synthetic drive (10 Hz, >= 1; default 20)')
    parser.add_argument('--seed', type=seed_int, default=DEMO_SEED,
                        help=f'world seed of the drive (default {DEMO_SEED}, unseen in training)')
    parser.add_argument('--model', type=Path, default=None,
                        help='model to run (default: the packaged default model)')
    parser.add_argument('--backend', default='auto',
                        choices=('auto', 'tensorrt', 'onnxruntime', 'torch'),
                        help='inference backend (default auto)')
    parser.add_argument('--train-minutes', type=positive_float, default=2.0,
                        help='training time when no default model exists (> 0; default 2)')
    add_bag_format_arguments(parser, 'the two bags')


def run(args) -> int:
    if args.frames < 1:
        raise ConfigError(f'--frames must be >= 1, got {args.frames}')
    start = time.monotonic()
    out: Path = args.out
    drive, output_bag, report = out / 'drive', out / 'drive_depth', out / 'report'
    # Each output and the command that makes it: an earlier demo's outputs are replaced, and
    # anything else at those paths is refused (all checked before anything is deleted).
    made_by = {drive: 'synth-bag', output_bag: 'infer-bag', report: 'eval-bag'}
    for path, command in made_by.items():
        check_output(path, 'folder', command, replace_own=True)
    for path, command in made_by.items():
        if path.exists():
            LOGGER.info('removing the previous demo output %s', path)
        remove_own_output(path, [command])
    out_created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        _run_steps(args, out, drive, output_bag, report)
    except BaseException:
        # All or nothing: the outputs of the steps that finished go too.
        for path, command in made_by.items():
            remove_own_output(path, [command])
        if out_created and not any(out.iterdir()):
            out.rmdir()
        raise
    print(f'\ndemo finished in {time.monotonic() - start:.0f} s')
    print(f'  input bag:   {drive}')
    print(f'  output bag:  {output_bag}   (replay: ros2 bag play {output_bag})')
    report_md = report / 'report.md'
    print(f'  report:      {report_md if report_md.is_file() else report}')
    return 0


def _run_steps(args, out: Path, drive: Path, output_bag: Path, report: Path) -> None:
    """synth-bag, the model (trained when missing), infer-bag, eval-bag."""
    progress = not args.no_progress
    print(f'[1/4] synthetic drive: {args.frames} frames of world seed {args.seed} -> {drive}')
    bag_format = ['--distro', args.distro] + (['--storage', args.storage] if args.storage
                                              else [])
    _run_command(['synth-bag', str(drive), '--frames', str(args.frames), '--seed',
                  str(args.seed), *bag_format], progress)

    model = args.model
    if model is None:
        model = default_model()
        if not model.is_file():
            model = train_quick_model(out, args.train_minutes, progress)
    print(f'[2/4] model: {model}')

    print(f'[3/4] infer-bag -> {output_bag}')
    _run_command(['infer-bag', str(drive), str(output_bag), '--model', str(model),
                  '--backend', args.backend, '--copy-input', *bag_format], progress)

    print(f'[4/4] eval-bag: {topics.OUTPUT_PREFIX}/depth against {topics.LIDAR_TOPIC}')
    _run_command(['eval-bag', str(output_bag), '--depth-topic',
                  topics.OUTPUT_PREFIX + topics.OUTPUT_SUFFIXES['depth'], '--out', str(report)],
                 progress)
