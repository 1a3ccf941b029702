"""eval-fleet and infer-fleet: a local Ray on 127.0.0.1 started here, real synthetic bags.

Three small synthetic drives, one corrupt bag (its sqlite file overwritten in the middle) and
one empty bag. The fleet's figures are checked against eval-bag run bag by bag, its output bags
against infer-bag's message by message; a worker killed in the middle of a bag, and a fleet
killed between bags, are resumed without redoing the bags already done.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from monodepth_ros.cli import main

GOOD = ('drive0', 'drive1', 'drive2')
MODEL_OPTIONS = ('--backend', 'onnxruntime', '--precision', 'fp32', '--qualitative', '0')
# Ray on loopback: without this, Ray replaces 127.0.0.1 by the machine's other address.
LOOPBACK_ENV = {'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER': '0'}


@pytest.fixture(scope='module')
def fleet(tmp_path_factory):
    """Folder of the five bags: three synthetic drives, a corrupt one, an empty one."""
    from monodepth_ros.bagtools.synth_bag import write_synthetic_bag
    from monodepth_ros.io.bagio import BagWriter

    folder = tmp_path_factory.mktemp('fleet')
    for seed, name in enumerate(GOOD):
        write_synthetic_bag(folder / name, frames=3, seed=seed, size=(160, 48), progress=False)
    corrupt = folder / 'corrupt'
    shutil.copytree(folder / 'drive0', corrupt)
    with (corrupt / 'drive0.db3').open('r+b') as storage:
        storage.seek(100)
        storage.write(b'\xff' * 100_000)
    with BagWriter(folder / 'empty', storage='sqlite3'):
        pass
    return folder


@pytest.fixture(scope='module')
def ray_address(tmp_path_factory):
    """A local Ray (2 CPUs) on 127.0.0.1 for this module; its workers cache models in tmp."""
    ray = pytest.importorskip('ray')
    saved = {name: os.environ.get(name) for name in (*LOOPBACK_ENV, 'MONODEPTH_ENGINE_CACHE')}
    os.environ.update(LOOPBACK_ENV)
    os.environ['MONODEPTH_ENGINE_CACHE'] = str(tmp_path_factory.mktemp('worker_cache'))
    ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address='127.0.0.1')
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _bags(fleet_dir, names):
    return [str(fleet_dir / name) for name in names]


def _summary(folder) -> dict:
    return json.loads((Path(folder) / 'summary.json').read_text())


def test_fleet_report_is_the_frame_weighted_mean_of_eval_bag(fleet, ray_address, tiny_onnx,
                                                               tmp_path, capsys):
    names = (*GOOD, 'corrupt', 'empty')
    out = tmp_path / 'graded'
    status = main(['eval-fleet', *_bags(fleet, names), '--model', str(tiny_onnx), *MODEL_OPTIONS,
                   '--out', str(out), '--no-progress'])
    assert status == 1      # two bags failed, the three others were graded
    printed = capsys.readouterr()
    assert 'FAILED corrupt: cannot open bag' in printed.out
    assert 'FAILED empty: bag' in printed.out and 'has no topic' in printed.out
    assert 'it has no topics at all (an empty recording' in printed.out
    report = _summary(out / 'report')
    by_name = {entry['name']: entry for entry in report['per_bag']}
    assert [by_name[name]['status'] for name in names] == ['done'] * 3 + ['failed'] * 2
    assert report['fleet'] == {'bags': 5, 'done_now': 3, 'done_before': 0, 'failed': 2}

    singles = []
    for name in GOOD:
        assert main(['eval-bag', str(fleet / name), '--model', str(tiny_onnx), *MODEL_OPTIONS,
                     '--out', str(tmp_path / f'single_{name}'), '--no-progress']) == 0
        single = _summary(tmp_path / f'single_{name}')
        # The fleet's report of each bag is eval-bag's own, to the last bit.
        assert _summary(out / 'bags' / name)['cap_80'] == single['cap_80']
        singles.append(single)
    frames = [single['cap_80']['frames'] for single in singles]
    assert report['frames_evaluated'] == sum(frames) == 9
    for cap in ('cap_80', 'cap_50'):
        assert report[cap]['frames'] == sum(single[cap]['frames'] for single in singles)
        assert report[cap]['n_pixels'] == sum(single[cap]['n_pixels'] for single in singles)
        for name in ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'silog', 'delta1', 'irmse',
                     'coverage'):
            weighted = sum(single[cap][name] * single[cap]['frames'] for single in singles)
            assert report[cap][name] == pytest.approx(weighted / sum(frames), rel=1e-12)
    # Distance bands pool the pixels of every bag.
    for index, band in enumerate(report['by_distance']):
        rows = [single['by_distance'][index] for single in singles]
        assert band['n_pixels'] == sum(row['n_pixels'] for row in rows)
        if band['n_pixels']:
            assert band['abs_rel'] == pytest.approx(sum(
                row['abs_rel'] * row['n_pixels'] for row in rows if row['n_pixels'])
                / band['n_pixels'], rel=1e-12)
    worst = max(singles, key=lambda single: single['cap_80']['abs_rel'])
    assert report['worst_bags'][0]['cap_80']['abs_rel'] == worst['cap_80']['abs_rel']
    assert report['worst_frames'][0]['abs_rel'] >= report['worst_frames'][-1]['abs_rel']
    assert {'bags.csv', 'report.md', 'worst_frames.csv'} <= {
        path.name for path in (out / 'report').iterdir()}

    # The model went to the workers by content: one copy per machine, named by its sha256.
    from monodepth_ros.model.files import file_sha256

    sha = file_sha256(tiny_onnx)
    cached = Path(os.environ['MONODEPTH_ENGINE_CACHE']) / 'models' / sha / tiny_onnx.name
    assert cached.read_bytes() == tiny_onnx.read_bytes()
    record = json.loads((out / '.fleet' / 'drive0.json').read_text())
    assert record['settings']['model'] == f'sha256:{sha}' and record['status'] == 'done'

    # A rerun redoes only what failed; other options redo everything; so does --force.
    stamps = {name: (out / 'bags' / name / 'summary.json').stat().st_mtime_ns for name in GOOD}
    assert main(['eval-fleet', *_bags(fleet, names), '--model', str(tiny_onnx), *MODEL_OPTIONS,
                 '--out', str(out), '--no-progress']) == 1
    assert _summary(out / 'report')['fleet'] == {'bags': 5, 'done_now': 0, 'done_before': 3,
                                                 'failed': 2}
    assert stamps == {name: (out / 'bags' / name / 'summary.json').stat().st_mtime_ns
                      for name in GOOD}
    assert _summary(out / 'report')['cap_80'] == report['cap_80']
    assert main(['eval-fleet', *_bags(fleet, GOOD[:1]), '--model', str(tiny_onnx),
                 *MODEL_OPTIONS, '--min-depth', '0.5', '--out', str(out), '--no-progress']) == 0
    assert _summary(out / 'report')['fleet']['done_now'] == 1
    assert main(['eval-fleet', *_bags(fleet, GOOD[:1]), '--model', str(tiny_onnx),
                 *MODEL_OPTIONS, '--min-depth', '0.5', '--out', str(out), '--no-progress',
                 '--force']) == 0
    assert _summary(out / 'report')['fleet']['done_now'] == 1


def test_one_bag_fleet_in_process_gives_eval_bag_figures_exactly(fleet, tiny_onnx, tmp_path):
    options = ['--model', str(tiny_onnx), *MODEL_OPTIONS, '--no-progress']
    assert main(['eval-fleet', str(fleet / 'drive1'), *options, '--workers', '1',
                 '--out', str(tmp_path / 'fleet')]) == 0
    assert main(['eval-bag', str(fleet / 'drive1'), *options,
                 '--out', str(tmp_path / 'single')]) == 0
    fleet_report, single = _summary(tmp_path / 'fleet' / 'report'), _summary(tmp_path / 'single')
    for key in ('cap_80', 'cap_50', 'frames_evaluated', 'frames_skipped', 'protocol', 'crop'):
        assert fleet_report[key] == single[key], key
    for band, row in zip(fleet_report['by_distance'], single['by_distance']):
        assert band['n_pixels'] == row['n_pixels']
        if row['n_pixels']:
            assert band['abs_rel'] == pytest.approx(row['abs_rel'], rel=1e-12)


def _partials(folder: Path) -> list[Path]:
    return [path for path in folder.glob('.*.partial-*')] if folder.is_dir() else []


def test_a_worker_killed_mid_bag_is_redone_and_leaves_nothing_half_written(
        fleet, ray_address, tiny_onnx, tmp_path):
    out = tmp_path / 'graded'
    statuses = []
    run = threading.Thread(target=lambda: statuses.append(main(
        ['eval-fleet', *_bags(fleet, GOOD), '--model', str(tiny_onnx), *MODEL_OPTIONS,
         '--out', str(out), '--no-progress'])))
    run.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and run.is_alive() and time.monotonic() < deadline:
        for partial in _partials(out / 'bags'):
            if partial.name.startswith('.drive1.'):
                # The hidden sibling is named after the process writing it: the Ray worker.
                killed = int(partial.name.rsplit('-', 1)[1])
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.005)
    run.join(timeout=180)
    assert killed is not None and killed != os.getpid()
    assert statuses == [0]
    report = _summary(out / 'report')
    assert report['fleet'] == {'bags': 3, 'done_now': 3, 'done_before': 0, 'failed': 0}
    record = json.loads((out / '.fleet' / 'drive1.json').read_text())
    assert record['pid'] != killed      # redone by another worker
    assert _summary(out / 'bags' / 'drive1')['frames_evaluated'] == 3
    assert _partials(out / 'bags') == []


def _cli(*args, **kwargs):
    env = {**os.environ, **LOOPBACK_ENV, 'PYTHONPATH': str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, '-m', 'monodepth_ros.cli', *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_a_fleet_killed_between_bags_resumes_where_it_stopped(fleet, tiny_onnx, tmp_path):
    out = tmp_path / 'graded'
    command = ['eval-fleet', *_bags(fleet, GOOD), '--model', str(tiny_onnx), *MODEL_OPTIONS,
               '--out', str(out), '--workers', '1', '--no-progress']
    process = _cli(*command)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / '.fleet' / 'drive0.json').exists() and any(
                path.name.startswith('.drive1.') for path in _partials(out / 'bags')):
            process.kill()
            break
        time.sleep(0.005)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, 'the fleet ended before it could be killed'
    assert not (out / 'bags' / 'drive1').exists() and not (out / 'report').exists()
    first = (out / 'bags' / 'drive0' / 'summary.json').stat().st_mtime_ns

    process = _cli(*command)
    printed, errors = process.communicate(timeout=300)
    assert process.returncode == 0, errors
    assert (out / 'bags' / 'drive0' / 'summary.json').stat().st_mtime_ns == first
    assert _summary(out / 'report')['fleet'] == {'bags': 3, 'done_now': 2, 'done_before': 1,
                                                 'failed': 0}
    assert _partials(out / 'bags') == []


def test_sigterm_stops_a_ray_fleet_with_nothing_half_written(fleet, ray_address, tiny_onnx,
                                                            tmp_path):
    out = tmp_path / 'graded'
    process = _cli('eval-fleet', *_bags(fleet, GOOD), '--model', str(tiny_onnx), *MODEL_OPTIONS,
                   '--out', str(out), '--address', ray_address, '--no-progress')
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if _partials(out / 'bags'):
            process.terminate()
            break
        time.sleep(0.005)
    printed, errors = process.communicate(timeout=60)
    assert process.returncode == 143, errors
    assert errors.strip().endswith('monodepth eval-fleet: interrupted')
    assert _partials(out / 'bags') == [] and not (out / 'report').exists()


def test_infer_fleet_writes_the_bags_infer_bag_writes(fleet, ray_address, tiny_onnx, tmp_path):
    from monodepth_ros.io.bagio import BagReader

    out = tmp_path / 'inferred'
    # Through --address, the way a cluster is used, from another process.
    process = _cli('infer-fleet', *_bags(fleet, ('drive0', 'drive2', 'corrupt')), '--model',
                   str(tiny_onnx), '--backend', 'onnxruntime', '--out', str(out),
                   '--address', ray_address, '--no-progress')
    printed, errors = process.communicate(timeout=300)
    assert process.returncode == 1, errors       # the corrupt bag failed, the others are done
    assert 'FAILED  corrupt: cannot open bag' in printed
    assert not (out / 'corrupt').exists()
    listing = json.loads((out / 'fleet.json').read_text())
    assert [entry['status'] for entry in listing['bags']] == ['done', 'done', 'failed']
    for name in ('drive0', 'drive2'):
        single = tmp_path / f'single_{name}'
        assert main(['infer-bag', str(fleet / name), str(single), '--model', str(tiny_onnx),
                     '--backend', 'onnxruntime', '--no-progress']) == 0
        with BagReader(out / name) as fleet_bag, BagReader(single) as single_bag:
            assert fleet_bag.message_counts == single_bag.message_counts
            assert list(fleet_bag.serialized_messages()) == list(
                single_bag.serialized_messages())


def test_fleet_without_ray_says_how_to_install_it(fleet, tiny_onnx, tmp_path, monkeypatch,
                                                   capsys):
    monkeypatch.setitem(sys.modules, 'ray', None)      # import ray raises ImportError
    assert main(['eval-fleet', str(fleet / 'drive0'), '--model', str(tiny_onnx),
                 '--out', str(tmp_path / 'out'), '--workers', '2', '--no-progress']) == 2
    error = capsys.readouterr().err.strip()
    assert error.count('\n') == 0
    assert 'pip install monodepth_ros[fleet]' in error and '--workers 1' in error


def test_bad_fleets_are_refused_in_one_line(fleet, tiny_onnx, tmp_path, capsys):
    options = ['--model', str(tiny_onnx), '--workers', '1', '--no-progress']
    assert main(['eval-fleet', str(fleet / 'nothing*'), *options,
                 '--out', str(tmp_path / 'a')]) == 2
    assert 'no bag matches' in capsys.readouterr().err
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'notes.txt').write_text('keep me')
    assert main(['eval-fleet', str(fleet / 'drive0'), *options, '--out', str(mine)]) == 2
    assert 'was not made by monodepth eval-fleet' in capsys.readouterr().err
    assert (mine / 'notes.txt').read_text() == 'keep me'
    assert main(['infer-fleet', str(fleet / 'drive0'), *options, '--workers', '0',
                 '--out', str(tmp_path / 'b')]) == 2


def test_bags_from_paths_globs_and_manifests(fleet, tmp_path, monkeypatch):
    from monodepth_ros.fleet.bags import bag_keys, expand_bags

    monkeypatch.chdir(tmp_path)
    manifest = tmp_path / 'lists' / 'drives.txt'
    manifest.parent.mkdir()
    # Relative entries are read from the manifest's folder, command-line ones from the cwd.
    manifest.write_text(f'# the fleet\n{fleet}/drive*\n\n../missing  # fails alone\n')
    bags = expand_bags([str(manifest), str(fleet / 'drive0'), 'other/drive0'])
    assert bags == [fleet / 'drive0', fleet / 'drive1', fleet / 'drive2', tmp_path / 'missing',
                    tmp_path / 'other' / 'drive0']
    keys = bag_keys([fleet / 'drive0', tmp_path / 'other' / 'drive0', tmp_path / 'x.mcap'])
    assert keys[tmp_path / 'x.mcap'] == 'x'
    first, second = keys[fleet / 'drive0'], keys[tmp_path / 'other' / 'drive0']
    assert first != second and first.startswith('drive0-') and second.startswith('drive0-')


def test_model_and_card_files_travel_by_content_and_presets_as_they_are(tiny_onnx, tmp_path):
    from monodepth_ros.fleet.runner import materialize, ship_files
    from monodepth_ros.model.files import file_sha256

    card = tmp_path / 'card.yaml'
    card.write_text('preset: zoedepth\n')
    shipped = ship_files({'model': tiny_onnx, 'model_card': str(card), 'camera_topic': '/a'})
    assert [(file.option, file.name) for file in shipped] == [('model', tiny_onnx.name),
                                                               ('model_card', 'card.yaml')]
    assert ship_files({'model': None, 'model_card': 'zoedepth'}) == []
    paths = materialize(shipped, tmp_path / 'cache')
    assert paths['model'] == (tmp_path / 'cache' / 'models' / file_sha256(tiny_onnx)
                              / tiny_onnx.name)
    assert paths['model'].read_bytes() == tiny_onnx.read_bytes()
    assert paths['model_card'].read_text() == 'preset: zoedepth\n'
    assert materialize(shipped, tmp_path / 'cache') == paths     # once per machine
