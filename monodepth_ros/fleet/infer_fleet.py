"""Run the depth pipeline on a fleet of bags: infer-bag on every bag, one output bag each.

Every option of infer-bag works here and means the same (see "monodepth infer-bag --help");
the fleet's own are --out, --address, --workers, --threads-per-worker and --force. One task
per bag, on a local Ray (default), on the Ray cluster at --address, or in this process with
--workers 1. Each input bag gives the rosbag2 OUT/NAME, the bag infer-bag writes for it: it
appears only when complete (an interrupted bag leaves nothing there). A rerun skips the bags
already done with the same model (by sha256), options and bag files, unless --force; a bag
that fails is reported with its reason and the others go on. OUT/fleet.json lists every bag
with its frames, time and outcome. Exit status 1 when a bag failed.
"""

from __future__ import annotations

import json
from pathlib import Path

from monodepth_ros.fleet.runner import BagCommand, add_fleet_arguments

LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)


def frames_written(bag: Path, options: dict) -> int:
    """Frames in a finished output bag: messages of its busiest output topic."""
    from monodepth_ros.io.bagio import BagReader

    with BagReader(bag) as reader:
        counts = reader.message_counts
    return max((count for topic, count in counts.items()
                if topic.startswith(options['prefix'] + '/')), default=0)


INFER_BAG = BagCommand(
    name='infer-bag', fleet_name='infer-fleet', module='monodepth_ros.bagtools.infer_bag',
    input_option='input', output_option='output', replaces_own=False, outputs_folder='',
    frames_done=frames_written)


def add_arguments(parser) -> None:
    add_fleet_arguments(parser, INFER_BAG.module, ('input', 'output'),
                        'folder of the output bags: new, empty, or an earlier infer-fleet '
                        'folder (resumed)')


def run(args) -> int:
    from dataclasses import asdict

    from monodepth_ros.fleet.report import bag_lines
    from monodepth_ros.fleet.runner import run_fleet
    from monodepth_ros.io.outputs import atomic_output

    outcomes = run_fleet(INFER_BAG, args)
    listing = {'command': INFER_BAG.fleet_name, 'bags': [asdict(item) for item in outcomes]}
    with atomic_output(Path(args.out) / 'fleet.json', 'file', INFER_BAG.fleet_name) as partial:
        partial.write_text(json.dumps(listing, indent=2) + '\n')
    print('\n'.join(bag_lines(outcomes)))
    return 1 if any(outcome.status == 'failed' for outcome in outcomes) else 0
