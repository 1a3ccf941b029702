"""Grade a fleet of bags against LiDAR ground truth: eval-bag on every bag, one report over all.

Every option of eval-bag works here and means the same (see "monodepth eval-bag --help"); the
fleet's own are --out, --address, --workers, --threads-per-worker and --force. One task per
bag, on a local Ray (default), on the Ray cluster at --address, or in this process with
--workers 1. Each bag's eval-bag report lands in OUT/bags/NAME as soon as that bag is done
(complete or absent); a rerun skips the bags already graded with the same model (by sha256),
options and bag files, unless --force. A bag that cannot be graded (corrupt, missing topics)
is reported with its reason and the others go on. OUT/report holds the fleet's report:
summary.json and report.md with the metrics over every frame of the fleet (the mean of the
per-frame metrics, as eval-bag averages them: a fleet of one bag gives eval-bag's figures),
bags.csv (one row per bag), worst_frames.csv, the worst bags and the error by distance band.
Exit status 1 when a bag failed or no frame could be graded.
"""

from __future__ import annotations

import json
from pathlib import Path

from monodepth_ros.fleet.runner import BagCommand, add_fleet_arguments

LONG_RUNNING = True     # monodepth gives it --no-progress (command.build_parser)


def frames_evaluated(report: Path, options: dict) -> int:
    """Frames graded, from a finished eval-bag report."""
    return int(json.loads((report / 'summary.json').read_text())['frames_evaluated'])


EVAL_BAG = BagCommand(
    name='eval-bag', fleet_name='eval-fleet', module='monodepth_ros.evaluation.cli',
    input_option='bag', output_option='out', replaces_own=True, outputs_folder='bags',
    frames_done=frames_evaluated,
    status_reasons={1: 'no frame could be graded (its report in OUT/bags says why)'})


def add_arguments(parser) -> None:
    add_fleet_arguments(parser, EVAL_BAG.module, ('bag', '--out'),
                        'fleet folder: new, empty, or an earlier eval-fleet folder (resumed); '
                        'per-bag reports in OUT/bags, the fleet report in OUT/report')


def run(args) -> int:
    from monodepth_ros.fleet.report import format_fleet, write_fleet_report
    from monodepth_ros.fleet.runner import run_fleet

    outcomes = run_fleet(EVAL_BAG, args)
    summary = write_fleet_report(outcomes, Path(args.out))
    print(format_fleet(summary))
    print(f'fleet report in {Path(args.out) / "report"}')
    failed = summary['fleet']['failed']
    return 1 if failed or not summary['frames_evaluated'] else 0
