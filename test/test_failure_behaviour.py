"""Nothing lost, nothing half-written: outputs on errors, interruptions and a full disk.

Every command writes its bag, report folder, dataset folder or model through a hidden
temporary sibling (``.NAME.partial-<pid>``) renamed into place when complete. These tests start
real ``monodepth`` subprocesses, wait until the sibling exists (the command is mid-work) and
send SIGINT, SIGTERM or SIGKILL; a full disk is a file-size limit set in the subprocess
(RLIMIT_FSIZE with SIGXFSZ ignored, so writes fail with EFBIG), or a 2 MB tmpfs where the
tests may mount one. The README's "Failure behaviour" table states what these tests check.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from monodepth_ros import cli
from monodepth_ros.errors import OutputError
from monodepth_ros.io import topics
from monodepth_ros.io.bagio import BagReader, BagWriter
from monodepth_ros.io.outputs import (
    MARKER_NAME,
    atomic_output,
    made_by,
    remove_own_output,
    temp_sibling,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 120     # an upper bound for a loaded 2-core machine, never a measurement


def monodepth(args, cwd: Path, file_size_limit: int | None = None) -> subprocess.Popen:
    """Start ``monodepth ARGS`` from this checkout; stderr goes to ``cwd/stderr.txt``."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    stderr = (cwd / 'stderr.txt').open('w')
    try:
        return subprocess.Popen([sys.executable, '-m', 'monodepth_ros.cli', *map(str, args)],
                                cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                preexec_fn=limit_file_size if file_size_limit else None)
    finally:
        stderr.close()


def finished(process: subprocess.Popen, cwd: Path) -> tuple[int, str]:
    """(exit status, stderr) once ``process`` has ended."""
    status = process.wait(timeout=STARTUP_TIMEOUT_S)
    return status, (cwd / 'stderr.txt').read_text()


def partials(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f'.{out.name}.partial-*'))


# How a shell sees Ctrl-C: status 130. Python itself may end by SIGINT instead (status -2 here)
# when the interrupt arrived while an extension module was running Python code (seen once in
# CI, during the demo); a shell shows 130 for both, and the cleanups have run in both.
INTERRUPTED = (130, -signal.SIGINT)


def wait_until(condition, process: subprocess.Popen, cwd: Path) -> None:
    """Poll ``condition`` until true; fails if the process ends first (it was not mid-work)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(f'the command ended (status {process.returncode}) before it was '
                        f'mid-work: {(cwd / "stderr.txt").read_text()[-2000:]}')
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail('the command did not start writing')
        time.sleep(0.01)


def write_image_bag(path: Path, frames: int, garbage_at: int | None = None) -> None:
    """A camera bag of ``frames`` 128x64 images with CameraInfo (raw garbage CDR at one)."""
    from monodepth_ros.io.camera import CameraModel
    from monodepth_ros.io.messages import array_to_image, make_header, model_to_camera_info

    camera = CameraModel.from_intrinsics(100.0, 100.0, 63.5, 31.5, 128, 64)
    rgb = np.zeros((64, 128, 3), np.uint8)
    rgb[:, :, 0] = np.arange(128, dtype=np.uint8)[None, :]
    with BagWriter(path, storage='mcap') as bag:
        types = bag.types
        for index in range(frames):
            stamp = 1_000_000_000 + index * 100_000_000
            header = make_header(types, stamp, topics.CAMERA_FRAME)
            bag.write(topics.CAMERA_INFO_TOPIC, model_to_camera_info(types, camera, header),
                      stamp)
            bag.write(topics.CAMERA_IMAGE_TOPIC, array_to_image(types, rgb, 'rgb8', header),
                      stamp)
            if index == garbage_at:
                connection = bag._connections[topics.CAMERA_IMAGE_TOPIC]
                bag._writer.write(connection, stamp + 1, b'\x00\x01\x00\x00 not an image')


@pytest.fixture(scope='module')
def lidar_bag(tmp_path_factory) -> Path:
    """A synthetic drive at full size with LiDAR: a few seconds of eval-bag work."""
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag

    return write_synthetic_bag(tmp_path_factory.mktemp('drive') / 'drive', 12, seed=3,
                               progress=False)


@pytest.fixture(scope='module')
def camera_bag(tmp_path_factory) -> Path:
    """300 small camera frames without LiDAR: a few seconds of infer-bag work."""
    path = tmp_path_factory.mktemp('camera') / 'camera'
    write_image_bag(path, 300)
    return path


# -- the mechanism --------------------------------------------------------------------------------
def test_atomic_output_renames_complete_outputs_only(tmp_path):
    out = tmp_path / 'new' / 'report'
    with pytest.raises(RuntimeError), atomic_output(out, 'folder', 'eval-bag') as partial:
        (partial / 'summary.json').write_text('{}')
        assert partial == temp_sibling(out) and partial.is_dir()
        raise RuntimeError('stopped half-way')
    assert not (tmp_path / 'new').exists()      # nothing at OUT, nor the folder made for it

    with atomic_output(out, 'folder', 'eval-bag') as partial:
        (partial / 'summary.json').write_text('{}')
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME, 'summary.json']
    assert made_by(out) == 'eval-bag' and not partials(out)

    # An earlier output of the same command is replaced as a whole, never merged.
    with atomic_output(out, 'folder', 'eval-bag', replace_own=True) as partial:
        (partial / 'frames.csv').write_text('stamp_ns\n')
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME, 'frames.csv']
    assert sorted(p.name for p in out.parent.iterdir()) == ['report']
    # ... but only with replace_own, and only when that command made it.
    with pytest.raises(OutputError, match='earlier monodepth eval-bag output'):
        with atomic_output(out, 'folder', 'eval-bag'):
            pass
    with pytest.raises(OutputError, match='earlier monodepth eval-bag output'):
        with atomic_output(out, 'folder', 'synth-bag', replace_own=True):
            pass
    assert sorted(p.name for p in out.iterdir()) == [MARKER_NAME, 'frames.csv']


def test_atomic_file_outputs_get_the_umask_mode(tmp_path):
    from conftest import save_tiny_checkpoint

    previous = os.umask(0o022)
    try:
        with atomic_output(tmp_path / 'model.bin', 'file', 'export') as partial:
            partial.write_bytes(b'weights')
            partial.chmod(0o600)                # as tempfile.mkstemp makes them
        checkpoint = save_tiny_checkpoint(tmp_path / 'model.pt')
        os.umask(0o027)
        with atomic_output(tmp_path / 'model.bin', 'file', 'export') as partial:
            partial.write_bytes(b'new weights')
    finally:
        os.umask(previous)
    assert (checkpoint.stat().st_mode & 0o777) == 0o644
    assert ((tmp_path / 'model.bin').stat().st_mode & 0o777) == 0o640
    assert (tmp_path / 'model.bin').read_bytes() == b'new weights'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.bin', 'model.pt']
    with pytest.raises(OutputError, match='is a folder'):
        with atomic_output(tmp_path, 'file', 'export'):
            pass


def test_stale_partials_of_ended_processes_are_removed(tmp_path):
    ended = subprocess.Popen([sys.executable, '-c', 'pass'])
    ended.wait()
    out = tmp_path / 'bag'
    stale = temp_sibling(out, pid=ended.pid)
    (stale / 'bag').mkdir(parents=True)
    running = temp_sibling(out, pid=os.getppid())     # a live process's work is kept
    running.mkdir()
    with atomic_output(out, 'bag', 'synth-bag') as partial:
        partial.mkdir()
    assert not stale.exists() and running.is_dir() and made_by(out) == 'synth-bag'


def test_remove_own_output_keeps_what_others_made(tmp_path):
    foreign = tmp_path / 'drive'
    foreign.mkdir()
    (foreign / 'precious_recording.db3').write_bytes(b'irreplaceable')
    with pytest.raises(OutputError, match=f'{foreign} exists and was not made by monodepth'):
        remove_own_output(foreign, ['synth-bag'])
    (foreign / MARKER_NAME).write_text(json.dumps({'command': 'infer-bag'}))
    with pytest.raises(OutputError):
        remove_own_output(foreign, ['synth-bag'])
    assert (foreign / 'precious_recording.db3').read_bytes() == b'irreplaceable'
    remove_own_output(foreign, ['infer-bag'])
    assert not foreign.exists()


# -- interruptions --------------------------------------------------------------------------------
@pytest.mark.parametrize('signal_number, status',
                         [(signal.SIGINT, INTERRUPTED), (signal.SIGTERM, (143,))])
def test_interrupted_synth_bag_leaves_nothing(tmp_path, signal_number, status):
    out = tmp_path / 'drive'
    process = monodepth(['synth-bag', out, '--frames', 200, '--size', '128x64', '--no-progress'],
                        tmp_path)
    wait_until(lambda: any((p / 'drive' / 'drive.db3').exists() for p in partials(out)),
               process, tmp_path)
    process.send_signal(signal_number)
    code, stderr = finished(process, tmp_path)
    assert code in status
    assert stderr.strip().splitlines()[-1] == 'monodepth synth-bag: interrupted'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['stderr.txt']


def test_killed_synth_bag_leaves_a_hidden_partial_that_a_rerun_removes(tmp_path):
    out = tmp_path / 'drive'
    process = monodepth(['synth-bag', out, '--frames', 200, '--size', '128x64', '--no-progress'],
                        tmp_path)
    wait_until(lambda: any((p / 'drive' / 'drive.db3').exists() for p in partials(out)),
               process, tmp_path)
    process.kill()
    assert process.wait(timeout=STARTUP_TIMEOUT_S) == -signal.SIGKILL
    assert not out.exists() and [p.name for p in partials(out)] == [
        f'.drive.partial-{process.pid}']

    rerun = monodepth(['synth-bag', out, '--frames', 2, '--size', '64x32', '--no-progress'],
                      tmp_path)
    assert finished(rerun, tmp_path)[0] == 0
    assert not partials(out)
    with BagReader(out) as bag:
        assert bag.message_counts[topics.CAMERA_IMAGE_TOPIC] == 2


def test_interrupted_infer_bag_leaves_nothing(tmp_path, camera_bag, tiny_onnx):
    out = tmp_path / 'depth'
    process = monodepth(['infer-bag', camera_bag, out, '--model', tiny_onnx, '--backend',
                         'onnxruntime', '--copy-input', '--no-progress'], tmp_path)
    wait_until(lambda: any((p / 'depth').exists() for p in partials(out)), process, tmp_path)
    process.send_signal(signal.SIGINT)
    code, stderr = finished(process, tmp_path)
    assert code in INTERRUPTED
    assert stderr.strip().splitlines()[-1] == 'monodepth infer-bag: interrupted'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['stderr.txt']


def test_eval_bag_report_is_whole_or_absent(tmp_path, lidar_bag, tiny_onnx):
    out = tmp_path / 'report'
    grade = ['eval-bag', lidar_bag, '--model', tiny_onnx, '--backend', 'onnxruntime', '--out',
             out, '--no-progress']
    process = monodepth([*grade, '--qualitative', 12], tmp_path)
    wait_until(lambda: bool(partials(out)), process, tmp_path)
    process.send_signal(signal.SIGINT)
    code, stderr = finished(process, tmp_path)
    assert code in INTERRUPTED
    assert stderr.strip().splitlines()[-1] == 'monodepth eval-bag: interrupted'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['stderr.txt']

    # A second run replaces the first one's report as a whole: no strips of the first remain.
    assert cli.main([*map(str, grade), '--qualitative', '2']) == 0
    assert len(list(out.glob('qualitative_*.png'))) == 2 and made_by(out) == 'eval-bag'
    assert cli.main([*map(str, grade), '--qualitative', '0']) == 0
    assert not list(out.glob('qualitative_*.png')) and (out / 'report.md').is_file()

    # A folder holding anything else is refused before any work, and left as it was.
    thesis = tmp_path / 'thesis'
    thesis.mkdir()
    (thesis / 'thesis.md').write_text('four years of work')
    process = monodepth([*grade[:grade.index('--out')], '--out', thesis], tmp_path)
    code, stderr = finished(process, tmp_path)
    assert code == 2 and stderr.strip().splitlines() == [
        f'monodepth eval-bag: error: {thesis} exists already and was not made by monodepth '
        'eval-bag; it is left as it is: remove it or choose another path']
    assert [p.name for p in thesis.iterdir()] == ['thesis.md']


def interrupted_import(interruption: KeyboardInterrupt):
    """What ONNX Runtime raises when Ctrl-C (or SIGTERM) arrives during its import."""
    try:
        raise interruption
    except KeyboardInterrupt as error:
        raise ImportError('initialization failed') from error


def test_ctrl_c_inside_an_extension_import_is_an_interruption(capsys):
    """The command ends as interrupted (130, 143 for SIGTERM); a real ImportError still raises."""
    from types import SimpleNamespace

    from monodepth_ros.command import Terminated, run_command

    def module(interruption):
        return SimpleNamespace(add_arguments=lambda parser: None,
                               run=lambda args: interrupted_import(interruption))

    assert run_command('eval-bag', module(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err.strip() == 'monodepth eval-bag: interrupted'
    assert run_command('eval-bag', module(Terminated()), []) == 143
    assert capsys.readouterr().err.strip() == 'monodepth eval-bag: interrupted'

    def broken(args):
        raise ImportError('no module named onnxruntime')
    with pytest.raises(ImportError, match='no module named onnxruntime'):
        run_command('eval-bag', SimpleNamespace(add_arguments=lambda parser: None, run=broken),
                    [])


def test_a_missing_package_fallback_does_not_swallow_ctrl_c(monkeypatch):
    """Where a missing package has a fallback, an interrupted import still interrupts."""
    from monodepth_ros.model import efficientnet_lite

    def missing(name):
        raise ImportError(f'No module named {name!r}')

    monkeypatch.setattr(efficientnet_lite.importlib, 'import_module', missing)
    assert efficientnet_lite.packaged_weights_path('efficientnet_lite2') is None
    monkeypatch.setattr(efficientnet_lite.importlib, 'import_module',
                        lambda name: interrupted_import(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        efficientnet_lite.packaged_weights_path('efficientnet_lite2')


def test_demo_refuses_outputs_it_did_not_make(tmp_path, tiny_onnx, capsys):
    out = tmp_path / 'demo'
    (out / 'drive').mkdir(parents=True)
    (out / 'drive' / 'precious_recording.db3').write_bytes(b'irreplaceable')
    (out / 'report').mkdir()
    (out / 'report' / 'thesis.md').write_text('four years of work')
    assert cli.main(['demo', '--out', str(out), '--model', str(tiny_onnx), '--frames', '1']) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f'monodepth demo: error: {out / "drive"} exists already and was not made by monodepth '
        'synth-bag; it is left as it is: remove it or choose another path']
    assert (out / 'drive' / 'precious_recording.db3').read_bytes() == b'irreplaceable'
    assert (out / 'report' / 'thesis.md').read_text() == 'four years of work'
    assert sorted(p.name for p in out.iterdir()) == ['drive', 'report']


def test_interrupted_demo_leaves_nothing_and_a_rerun_replaces_its_outputs(tmp_path, tiny_onnx):
    out = tmp_path / 'demo'
    demo = ['demo', '--out', out, '--model', tiny_onnx, '--backend', 'onnxruntime', '--frames',
            4, '--no-progress']
    process = monodepth(demo, tmp_path)
    # Interrupted after the drive is complete, while infer-bag or eval-bag writes.
    wait_until(lambda: (out / 'drive').is_dir(), process, tmp_path)
    process.send_signal(signal.SIGINT)
    code, stderr = finished(process, tmp_path)
    assert code in INTERRUPTED
    assert stderr.strip().splitlines()[-1] == 'monodepth demo: interrupted'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['stderr.txt']

    for _ in range(2):     # the second run replaces the outputs the first one made
        assert finished(monodepth(demo, tmp_path), tmp_path)[0] == 0
        assert sorted(p.name for p in out.iterdir()) == ['drive', 'drive_depth', 'report']
        assert [made_by(out / name) for name in ('drive', 'drive_depth', 'report')] == [
            'synth-bag', 'infer-bag', 'eval-bag']


# -- a full disk ----------------------------------------------------------------------------------
@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_full_disk_gives_one_line_and_nothing_at_out(tmp_path, storage):
    out = tmp_path / 'drive'
    process = monodepth(['synth-bag', out, '--frames', 20, '--size', '128x64', '--storage',
                         storage, '--no-progress'], tmp_path, file_size_limit=2**20)
    code, stderr = finished(process, tmp_path)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert lines[0].startswith('monodepth synth-bag: error: cannot ')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['stderr.txt']


def test_full_disk_during_infer_bag(tmp_path, camera_bag, tiny_onnx):
    out = tmp_path / 'depth'
    process = monodepth(['infer-bag', camera_bag, out, '--model', tiny_onnx, '--backend',
                         'onnxruntime', '--no-progress'], tmp_path, file_size_limit=2**20)
    code, stderr = finished(process, tmp_path)
    assert code == 2 and stderr.strip().splitlines()[-1].startswith(
        'monodepth infer-bag: error: cannot write to bag '), stderr
    assert 'Traceback' not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['stderr.txt']


def test_full_tmpfs(tmp_path):
    disk = tmp_path / 'small_disk'
    disk.mkdir()
    mount = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(disk)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip('a 2 MB tmpfs cannot be mounted here (needs root with CAP_SYS_ADMIN): '
                    f'{mount.stderr.strip()}')
    try:
        out = disk / 'drive'
        code, stderr = finished(monodepth(['synth-bag', out, '--frames', 20, '--size',
                                           '128x64', '--no-progress'], tmp_path), tmp_path)
        assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(['umount', str(disk)], check=True)


# -- bad input: an error and no output bag --------------------------------------------------------
def test_infer_bag_with_a_garbage_image_writes_no_bag(tmp_path, tiny_onnx, capsys):
    write_image_bag(tmp_path / 'in', 4, garbage_at=1)
    assert cli.main(['infer-bag', str(tmp_path / 'in'), str(tmp_path / 'out'), '--model',
                     str(tiny_onnx), '--backend', 'onnxruntime']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'is corrupt or truncated' in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in']


def test_infer_bag_without_frames_writes_no_bag(tmp_path, tiny_onnx, capsys):
    from monodepth_ros.io.camera import CameraModel
    from monodepth_ros.io.messages import array_to_image, make_header, model_to_camera_info

    with BagWriter(tmp_path / 'in', storage='mcap') as bag:     # CameraInfo only, no images
        header = make_header(bag.types, 1, topics.CAMERA_FRAME)
        camera = CameraModel.from_intrinsics(100.0, 100.0, 63.5, 31.5, 128, 64)
        bag.write(topics.CAMERA_INFO_TOPIC, model_to_camera_info(bag.types, camera, header), 1)
        bag._writer.add_connection(topics.CAMERA_IMAGE_TOPIC, 'sensor_msgs/msg/Image',
                                   typestore=bag.types.typestore)
    infer = ['infer-bag', str(tmp_path / 'in'), str(tmp_path / 'out'), '--model', str(tiny_onnx),
             '--backend', 'onnxruntime']
    assert cli.main(infer) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f'monodepth infer-bag: error: bag {tmp_path / "in"} has no messages on '
        f'{topics.CAMERA_IMAGE_TOPIC}; no bag written to {tmp_path / "out"}']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['in']

    # Images that all fail to decode: the same, with the count.
    with BagWriter(tmp_path / 'bad', storage='mcap') as bag:
        image = array_to_image(bag.types, np.zeros((64, 128, 3), np.uint8), 'rgb8',
                               make_header(bag.types, 1, topics.CAMERA_FRAME))
        image.encoding = 'weird16'
        bag.write(topics.CAMERA_IMAGE_TOPIC, image, 1)
    infer[1:3] = [str(tmp_path / 'bad'), str(tmp_path / 'out')]
    assert cli.main(infer) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f'monodepth infer-bag: error: none of the 1 image(s) on {topics.CAMERA_IMAGE_TOPIC} in '
        f'{tmp_path / "bad"} could be processed (see the log); no bag written to '
        f'{tmp_path / "out"}')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad', 'in']


@pytest.mark.parametrize('name', ['depth.bag', 'depth.mcap', 'depth.db3'])
def test_bag_outputs_named_like_bag_files_are_refused(tmp_path, camera_bag, tiny_onnx, capsys,
                                                      name):
    assert cli.main(['infer-bag', str(camera_bag), str(tmp_path / name), '--model',
                     str(tiny_onnx)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'a rosbag2 is a folder' in err[0]
    assert f'without the suffix (e.g. {tmp_path / "depth"})' in err[0]
    assert list(tmp_path.iterdir()) == []
