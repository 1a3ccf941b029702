"""Run one existing command (eval-bag, infer-bag) on every bag of a fleet, one task per bag.

Each task calls the command's own ``run`` with the fleet's options, the bag as its input and
``<out>/.../<bag name>`` as its output, so every option of that command works the same on a
fleet and the outputs are the ones the command writes (atomically: complete or absent). When
a bag is done, a record ``<out>/.fleet/<bag name>.json`` is written (atomically too) naming
the bag's files, the sha256 of the model (and model card), the options and the package
version; a rerun skips a bag whose record matches and whose output is there, unless
``--force``. A bag that fails (corrupt, missing topics, a worker that died twice) is reported
with its one-line reason and the other bags go on.

Without ``--address`` and with one worker the bags run in this process, in order, without
Ray. Otherwise Ray runs them: a local Ray started for the run, or the cluster at ``--address``
(whose nodes must have monodepth_ros installed and see the bags and ``--out`` at the same
paths, e.g. on shared storage). The model file (and a model card file) goes into Ray's object
store once; each machine writes it into its own cache (``<engine cache>/models/<sha256>/``),
where its ONNX exports and TensorRT engines are cached as for any command.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from monodepth_ros.errors import ConfigError, MonodepthError, reraise_interruption
from monodepth_ros.io.outputs import atomic_output, claim_folder, remove_own_output

LOGGER = logging.getLogger(__name__)

RAY_VERSION = '2.58.0'      # the version the fleet is tested with (setup.py extra 'fleet')
INSTALL_HINT = f'pip install monodepth_ros[fleet] (or pip install ray=={RAY_VERSION})'
RECORDS = '.fleet'          # per-bag records, inside --out
# Options of the command that name files it reads: sent to the workers through Ray.
SHIPPED_OPTIONS = ('model', 'model_card')
# The fleet's own options; everything else is the per-bag command's and passes through.
FLEET_OPTIONS = ('bags', 'out', 'address', 'workers', 'threads_per_worker', 'force',
                 'verbose', 'no_progress')
# A bag whose worker process died (killed, out of memory) runs once more, then fails.
TASK_RETRIES = 1
CANCEL_WAIT_S = 10.0        # how long an interrupted fleet waits for its bags to clean up


@dataclass(frozen=True)
class BagCommand:
    """How a fleet runs one bag through an existing command (its module's ``run(args)``)."""

    name: str               # the per-bag command: 'eval-bag'
    fleet_name: str         # the fleet command: 'eval-fleet'
    module: str             # the module holding add_arguments/run
    input_option: str       # the attribute of args naming the input bag
    output_option: str      # ... and the output
    replaces_own: bool      # the command replaces its own earlier output (else removed first)
    outputs_folder: str     # where the per-bag outputs go inside --out ('' = --out itself)
    frames_done: Callable[[Path, dict], int]   # frames done, from (its output, its options)
    status_reasons: dict = field(default_factory=dict)   # exit status -> why the bag failed


@dataclass(frozen=True)
class ShippedFile:
    """A file the per-bag command reads, carried to the workers by content."""

    option: str
    name: str
    sha256: str
    data: bytes


@dataclass(frozen=True)
class BagTask:
    bag: str
    key: str
    output: str
    record: str
    identity: dict          # what the record must match for the bag to be skipped


@dataclass
class BagOutcome:
    bag: str
    key: str
    status: str              # 'done', 'skipped' (done by an earlier run) or 'failed'
    output: str
    reason: str | None = None
    frames: int = 0
    seconds: float = 0.0
    host: str = ''
    pid: int = 0
    peak_rss_mib: float = 0.0   # the worker process's peak resident memory so far


def import_ray():
    """Ray, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError as error:
        reraise_interruption(error)
        raise ConfigError(f'this fleet needs Ray, which is not installed: {INSTALL_HINT}; '
                          'or run it in this process with --workers 1') from None
    return ray


# -- options --------------------------------------------------------------------------------
def add_fleet_arguments(parser, module_name: str, skipped: tuple[str, ...], out_help: str) -> None:
    """The per-bag command's options (all but ``skipped``), then the fleet's own."""
    from monodepth_ros.options import positive_int

    parser.add_argument('bags', nargs='+', metavar='BAG',
                        help='bags (rosbag2 folders, .mcap/.db3 files, ROS 1 .bag), globs '
                        '(quoted: "drives/**/*.mcap") or manifest files (.txt, one bag or glob '
                        'a line)')
    importlib.import_module(module_name).add_arguments(_WithoutOptions(parser, skipped))
    fleet = parser.add_argument_group('fleet')
    fleet.add_argument('--out', type=Path, required=True, help=out_help)
    fleet.add_argument('--address', default=None,
                       help='Ray cluster to run on: ray://HOST:10001 (Ray client), HOST:6379 '
                       'or auto (the cluster this machine is part of); default: a local Ray '
                       'on this machine')
    fleet.add_argument('--workers', type=positive_int, default=None,
                       help='bags processed at once, >= 1 (default: every CPU of the machine '
                       'or cluster / --threads-per-worker); 1 without --address runs the '
                       'bags in this process, without Ray')
    fleet.add_argument('--threads-per-worker', type=positive_int, default=1,
                       help='CPU inference threads of each worker, >= 1 (default 1: on CPUs '
                       'bags side by side go faster than threads within one bag)')
    fleet.add_argument('--force', action='store_true',
                       help='redo every bag, even those an earlier run finished with the same '
                       'model and options')


class _WithoutOptions:
    """A parser that ignores the per-bag command's own input/output arguments."""

    def __init__(self, parser, skipped: tuple[str, ...]):
        self._parser = parser
        self._skipped = skipped

    def add_argument(self, *names, **kwargs):
        if names and names[0] in self._skipped:
            return None
        return self._parser.add_argument(*names, **kwargs)

    def add_mutually_exclusive_group(self, **kwargs):
        return _WithoutOptions(self._parser.add_mutually_exclusive_group(**kwargs),
                               self._skipped)

    def add_argument_group(self, *args, **kwargs):
        return _WithoutOptions(self._parser.add_argument_group(*args, **kwargs),
                               self._skipped)

    def __getattr__(self, name):
        return getattr(self._parser, name)


def command_options(args) -> dict:
    """The per-bag command's options of ``args`` (the fleet's own taken out).

    Paths are made absolute: a Ray worker does not run in this process's folder.
    """
    return {name: value.absolute() if isinstance(value, Path) else value
            for name, value in vars(args).items() if name not in FLEET_OPTIONS}


def _plain(value):
    return str(value) if isinstance(value, Path) else value


def ship_files(options: dict) -> list[ShippedFile]:
    """The files named by SHIPPED_OPTIONS (a preset name, or no value, stays as it is)."""
    import hashlib

    shipped = []
    for option in SHIPPED_OPTIONS:
        value = options.get(option)
        if value is None or not Path(value).is_file():
            continue
        path = Path(value)
        data = path.read_bytes()    # read once: hashed here, shipped to workers as is
        shipped.append(ShippedFile(option, path.name, hashlib.sha256(data).hexdigest(), data))
    return shipped


def task_identity(command: BagCommand, bag: Path, options: dict,
                  shipped: list[ShippedFile]) -> dict:
    """What a bag's record holds and a rerun compares: the same bag, model and options."""
    from monodepth_ros import __version__
    from monodepth_ros.fleet.bags import fingerprint

    by_content = {file.option: f'sha256:{file.sha256}' for file in shipped}
    settings = {name: by_content.get(name, _plain(value))
                for name, value in sorted(options.items())}
    return {'command': command.name, 'bag': str(bag), 'bag_files': fingerprint(bag),
            'settings': settings, 'version': __version__}


def read_record(path) -> dict | None:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _finished_before(task: BagTask) -> BagOutcome | None:
    record = read_record(task.record)
    if record is None or record.get('status') != 'done' or not Path(task.output).exists():
        return None
    if any(record.get(key) != value for key, value in task.identity.items()):
        return None
    return BagOutcome(task.bag, task.key, 'skipped', task.output,
                      frames=int(record.get('frames', 0)),
                      seconds=float(record.get('seconds', 0.0)), host=record.get('host', ''))


# -- one bag (in a Ray worker or in this process) -------------------------------------------
def _engine_cache(options: dict) -> Path:
    from monodepth_ros.engines.cache import default_cache_dir

    return Path(options.get('engine_cache_dir') or default_cache_dir())


def materialize(shipped: list[ShippedFile], cache: Path) -> dict[str, Path]:
    """Write each shipped file once per machine, ``<cache>/models/<sha256>/<name>``."""
    paths = {}
    for file in shipped:
        path = cache / 'models' / file.sha256 / file.name
        if not (path.is_file() and path.stat().st_size == len(file.data)):
            with atomic_output(path, 'file', 'fleet') as partial:
                partial.write_bytes(file.data)
        paths[file.option] = path
    return paths


def run_bag(command: BagCommand, options: dict, task: BagTask, shipped: list[ShippedFile],
            threads: int, local_files: bool = False) -> BagOutcome:
    """Run ``command`` on one bag; any failure becomes the outcome's one-line reason.

    ``local_files``: the shipped files' own paths are readable here (the in-process run).
    """
    from monodepth_ros.command import describe_os_error
    from monodepth_ros.engines import THREADS_ENV

    started = time.perf_counter()
    outcome = BagOutcome(task.bag, task.key, 'failed', task.output, host=socket.gethostname(),
                         pid=os.getpid())
    previous_threads = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)
    try:
        Path(task.record).unlink(missing_ok=True)   # its output is about to be redone
        if not command.replaces_own:
            remove_own_output(task.output, [command.name])
        args = dict(options)
        if not local_files:
            for option, path in materialize(shipped, _engine_cache(options)).items():
                args[option] = type(options[option])(path)
        args.update({command.input_option: task.bag, command.output_option: task.output,
                     'no_progress': True, 'verbose': False})
        module = importlib.import_module(command.module)
        with contextlib.redirect_stdout(io.StringIO()):   # the fleet prints its own summary
            status = int(module.run(argparse.Namespace(**args)) or 0)
        if status:
            outcome.reason = command.status_reasons.get(
                status, f'{command.name} ended with status {status}')
        else:
            outcome.frames = command.frames_done(Path(task.output), options)
            outcome.status = 'done'
    except (MonodepthError, OSError) as error:
        outcome.reason = describe_os_error(error) if isinstance(error, OSError) else str(error)
    except Exception as error:      # noqa: BLE001 - a bag the readers choke on fails alone
        LOGGER.debug('bag %s failed', task.bag, exc_info=True)
        outcome.reason = f'{type(error).__name__}: {error}'
    finally:
        if previous_threads is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = previous_threads
    outcome.reason = outcome.reason.splitlines()[0] if outcome.reason else outcome.reason
    outcome.seconds = time.perf_counter() - started
    outcome.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if outcome.status == 'done':
        record = {**task.identity, **asdict(outcome)}
        with atomic_output(Path(task.record), 'file', command.fleet_name) as partial:
            partial.write_text(json.dumps(record, indent=2) + '\n')
    return outcome


# -- the fleet --------------------------------------------------------------------------------
@dataclass
class FleetPlan:
    tasks: list[BagTask]            # the bags to run
    skipped: list[BagOutcome]       # the bags an earlier run finished (unless --force)
    keys: list[str]                 # every bag's name, in the fleet's order
    options: dict                   # the per-bag command's options
    shipped: list[ShippedFile]


def plan_fleet(command: BagCommand, args) -> FleetPlan:
    """Which bags to run; refuses a bad fleet or --out before any work."""
    from monodepth_ros.fleet.bags import bag_keys, expand_bags

    out = Path(os.path.abspath(args.out))
    # A glob over the drives may take in --out itself (and infer-fleet's bags in it).
    bags = [bag for bag in expand_bags(args.bags) if out not in (bag, *bag.parents)]
    if not bags:
        raise ConfigError(f'no bags to run: every one given is inside --out {args.out}')
    claim_folder(out, command.fleet_name)
    (out / RECORDS).mkdir(exist_ok=True)
    options = command_options(args)
    shipped = ship_files(options)
    keys = bag_keys(bags)
    tasks, skipped = [], []
    for bag in bags:
        key = keys[bag]
        task = BagTask(str(bag), key, str(out / command.outputs_folder / key),
                       str(out / RECORDS / f'{key}.json'),
                       task_identity(command, bag, options, shipped))
        earlier = None if args.force else _finished_before(task)
        if earlier is not None:
            skipped.append(earlier)
        else:
            tasks.append(task)
    return FleetPlan(tasks, skipped, [keys[bag] for bag in bags], options, shipped)


def run_fleet(command: BagCommand, args) -> list[BagOutcome]:
    """Run every bag of ``args.bags`` not finished before; outcomes in the fleet's order."""
    from tqdm import tqdm

    plan = plan_fleet(command, args)
    hidden = True if args.no_progress else None     # None: shown on a terminal only
    bag_bar = tqdm(total=len(plan.keys), initial=len(plan.skipped), unit='bag',
                   desc=command.fleet_name, disable=hidden, position=0)
    frame_bar = tqdm(unit='frame', desc='frames', disable=hidden, position=1)
    outcomes = list(plan.skipped)

    def finished(outcome: BagOutcome) -> None:
        outcomes.append(outcome)
        bag_bar.update(1)
        frame_bar.update(outcome.frames)
        if outcome.status == 'failed':
            tqdm.write(f'{command.fleet_name}: {outcome.bag}: {outcome.reason}', file=sys.stderr)

    try:
        if args.address is None and local_workers(args) == 1:
            with _bag_logs_quiet(not args.verbose):
                for task in plan.tasks:
                    finished(run_bag(command, plan.options, task, plan.shipped,
                                     args.threads_per_worker, local_files=True))
        elif plan.tasks:
            _run_on_ray(command, args, plan, finished)
    finally:
        frame_bar.close()
        bag_bar.close()
    position = {key: index for index, key in enumerate(plan.keys)}
    return sorted(outcomes, key=lambda outcome: position[outcome.key])


@contextlib.contextmanager
def _bag_logs_quiet(quiet: bool):
    """Warnings and errors only from the bags run here (as from Ray workers), unless -v."""
    root = logging.getLogger()
    level = root.level
    if quiet:
        root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def local_workers(args) -> int:
    """Workers of a fleet on this machine: --workers, else one per --threads-per-worker CPUs."""
    return args.workers or max((os.cpu_count() or 1) // args.threads_per_worker, 1)


def _start_ray(ray, args):
    """Connect to --address, or start a local Ray for this run; True when started here."""
    if ray.is_initialized():
        return False            # a caller (a notebook, a test) runs its own Ray
    quiet = dict(log_to_driver=False, logging_level=logging.WARNING)
    try:
        if args.address is None:
            ray.init(address='local', num_cpus=local_workers(args) * args.threads_per_worker,
                     include_dashboard=False, **quiet)
        else:
            ray.init(address=args.address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = args.address or 'a local Ray'
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ''
        raise ConfigError(f'cannot start or reach {where}: {first_line or type(error).__name__}'
                          ) from error
    return True


def _run_on_ray(command: BagCommand, args, plan: FleetPlan, finished) -> None:
    from monodepth_ros.command import Terminated

    ray = import_ray()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    started_here = _start_ray(ray, args)
    terminated = []

    def on_sigterm(signum, frame):
        terminated.append(signum)
        raise Terminated()

    if main_thread:
        # Ray's own handler ends the process at once; this one lets the bags clean up first.
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        threads = args.threads_per_worker
        cpus = int(ray.cluster_resources().get('CPU', 1))
        at_once = args.workers or max(cpus // threads, 1)
        remote = ray.remote(run_bag).options(num_cpus=threads, max_retries=TASK_RETRIES,
                                             retry_exceptions=False)
        shipped = ray.put(plan.shipped)     # in the object store once, not once per bag
        queue = deque(plan.tasks)
        running = {}
        try:
            while queue or running:
                while queue and len(running) < at_once:
                    task = queue.popleft()
                    running[remote.remote(command, plan.options, task, shipped, threads)] = task
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    task = running.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as error:   # the worker died, twice
                        outcome = BagOutcome(task.bag, task.key, 'failed', task.output,
                                             reason=_ray_reason(error))
                    finished(outcome)
        except BaseException as error:
            # Ctrl-C reaches the running bags as KeyboardInterrupt: their outputs clean up.
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            with contextlib.suppress(Exception):
                ray.wait(list(running), num_returns=len(running), timeout=CANCEL_WAIT_S)
            if terminated and not isinstance(error, Terminated):
                raise Terminated() from error     # Ray's wait turns it into KeyboardInterrupt
            raise
    finally:
        if started_here:
            ray.shutdown()
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _ray_reason(error) -> str:
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0] if text else "the worker failed"}'
