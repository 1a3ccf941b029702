"""The fleet's report, built from the eval-bag report of each bag (OUT/bags/NAME).

Metrics over the whole fleet are the mean of the per-frame metrics over every graded frame,
accumulated exactly as eval-bag accumulates them (``evaluation.metrics.RunningMean`` fed the
frames.csv rows, whose floats round-trip exactly): the frame-weighted mean of the bags'
figures, and for a fleet of one bag eval-bag's figures to the last bit. Distance bands pool
the pixels of every bag (each bag's band means weighted by its pixel count).
"""

from __future__ import annotations

import csv
import heapq
import json
import math
from collections import Counter
from pathlib import Path

from monodepth_ros.evaluation.metrics import METRIC_NAMES, GroupedErrors, RunningMean
from monodepth_ros.evaluation.report import format_number

WORST_BAGS = 5
WORST_FRAMES = 10
PER_BAG_METRICS = ('abs_rel', 'rmse', 'delta1')
# Per-bag summary fields the fleet report repeats (the same for every bag of one run).
SETTINGS = ('depth_source', 'protocol', 'crop', 'median_scaling', 'min_depth',
            'max_time_diff_ms')


def _cell_value(text: str):
    """A frames.csv cell: '' is NaN (how eval-bag writes it), numbers are numbers, else text."""
    if text == '':
        return float('nan')
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_frame_rows(report: Path) -> list[dict]:
    with (report / 'frames.csv').open(newline='') as handle:
        return [{key: _cell_value(value) for key, value in row.items()}
                for row in csv.DictReader(handle)]


def cap_keys(summary: dict) -> list[str]:
    return [key for key in summary if key.startswith('cap_')]


def frame_metrics(row: dict, prefix: str) -> dict:
    """One cap's metrics of a frames.csv row (the first cap unprefixed, as eval-bag writes)."""
    return {name: row[prefix + name] for name in METRIC_NAMES + ('n_pixels', 'coverage')
            if prefix + name in row}


def _add_bands(pooled: GroupedErrors | None, rows: list[dict]) -> GroupedErrors:
    if pooled is None:
        pooled = GroupedErrors([row['group'] for row in rows])
    pooled.add_rows(rows)
    return pooled


def fleet_summary(outcomes) -> dict:
    """The fleet's summary: eval-bag's summary fields over all bags, plus the fleet's own."""
    means: dict[str, RunningMean] = {}
    bands = None
    skipped, scans_skipped = Counter(), Counter()
    worst_frames: list[tuple] = []
    per_bag = []
    settings = {}
    for outcome in outcomes:
        entry = {'bag': outcome.bag, 'name': outcome.key, 'status': outcome.status,
                 'reason': outcome.reason, 'frames': outcome.frames,
                 'seconds': round(outcome.seconds, 3), 'host': outcome.host}
        per_bag.append(entry)
        if outcome.status == 'failed':
            continue
        report = Path(outcome.output)
        summary = json.loads((report / 'summary.json').read_text())
        settings = settings or {key: summary.get(key) for key in SETTINGS}
        caps = cap_keys(summary)
        for cap in caps:
            means.setdefault(cap, RunningMean())
            entry[cap] = {name: summary[cap].get(name) for name in PER_BAG_METRICS}
        for row in read_frame_rows(report):
            for index, cap in enumerate(caps):
                means[cap].add(frame_metrics(row, '' if index == 0 else f'{cap}_'))
            item = (row['abs_rel'], outcome.key, row['stamp_ns'], row['rmse'], row['delta1'])
            if len(worst_frames) < WORST_FRAMES:
                heapq.heappush(worst_frames, item)
            else:
                heapq.heappushpop(worst_frames, item)
        if summary.get('by_distance'):
            bands = _add_bands(bands, summary['by_distance'])
        skipped.update(summary['frames_skipped']['reasons'])
        scans_skipped.update(summary.get('scans_skipped', {}).get('reasons', {}))
    done = [entry for entry in per_bag if entry['status'] != 'failed']
    first_cap = next(iter(means), None)
    graded = [entry for entry in done if first_cap and _finite(entry[first_cap]['abs_rel'])]
    fleet = {
        'bags': len(per_bag),
        'done_now': sum(entry['status'] == 'done' for entry in per_bag),
        'done_before': sum(entry['status'] == 'skipped' for entry in per_bag),
        'failed': sum(entry['status'] == 'failed' for entry in per_bag),
    }
    return {
        'bag': f'fleet of {len(per_bag)} bags',
        **{key: settings.get(key) for key in SETTINGS},
        **{cap: mean.result() for cap, mean in means.items()},
        'frames_evaluated': sum(int(entry['frames']) for entry in done),
        'frames_skipped': {'count': int(sum(skipped.values())), 'reasons': dict(skipped),
                           'examples': []},
        'scans_skipped': {'count': int(sum(scans_skipped.values())),
                          'reasons': dict(scans_skipped)},
        'by_distance': bands.rows() if bands is not None else [],
        'by_class': None,
        'error': None,
        'fleet': fleet,
        'per_bag': per_bag,
        'worst_bags': sorted(graded, key=lambda entry: -entry[first_cap]['abs_rel'])[:WORST_BAGS],
        'worst_frames': [{'bag': key, 'stamp_ns': stamp, 'abs_rel': abs_rel, 'rmse': rmse,
                          'delta1': delta1} for abs_rel, key, stamp, rmse, delta1
                         in sorted(worst_frames, reverse=True)],
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def bag_lines(outcomes) -> list[str]:
    """One line per bag: what became of it (for both fleet commands)."""
    lines = []
    for outcome in outcomes:
        if outcome.status == 'failed':
            lines.append(f'  FAILED  {outcome.key}: {outcome.reason}')
        else:
            when = 'earlier run' if outcome.status == 'skipped' else f'{outcome.seconds:.1f} s'
            lines.append(f'  ok      {outcome.key}: {outcome.frames} frame(s) ({when}) -> '
                         f'{outcome.output}')
    done = sum(outcome.status != 'failed' for outcome in outcomes)
    lines.append(f'{done} of {len(outcomes)} bag(s) done, '
                 f'{sum(outcome.status == "skipped" for outcome in outcomes)} of them by an '
                 f'earlier run; {len(outcomes) - done} failed')
    return lines


def format_fleet(summary: dict) -> str:
    """eval-bag's table over the fleet, then the bags that failed and the worst bags."""
    from monodepth_ros.evaluation.report import format_table

    lines = [format_table(summary)]
    fleet = summary['fleet']
    lines.append(f'bags: {fleet["bags"]}, graded now {fleet["done_now"]}, by an earlier run '
                 f'{fleet["done_before"]}, failed {fleet["failed"]}')
    lines += [f'  FAILED {entry["name"]}: {entry["reason"]}' for entry in summary['per_bag']
              if entry['status'] == 'failed']
    caps = cap_keys(summary)
    if summary['worst_bags'] and caps:
        lines.append('worst bags (abs_rel): ' + ', '.join(
            f'{entry["name"]} {format_number(entry[caps[0]]["abs_rel"], ".4f")}'
            for entry in summary['worst_bags']))
    return '\n'.join(lines)


def _fleet_markdown(summary: dict) -> list[str]:
    caps = cap_keys(summary)
    first = caps[0] if caps else None
    lines = ['## Bags', '',
             f'{summary["fleet"]["bags"]} bags: graded in this run '
             f'{summary["fleet"]["done_now"]}, by an earlier run '
             f'{summary["fleet"]["done_before"]}, failed {summary["fleet"]["failed"]}. '
             f'Metrics at the {first[4:] if first else "first"} m cap.', '',
             '| bag | status | frames | abs_rel | rmse | delta1 | seconds |',
             '|---|---|---:|---:|---:|---:|---:|']
    for entry in summary['per_bag']:
        values = entry.get(first, {}) if first else {}
        status = entry['status'] if entry['status'] != 'failed' else f'failed: {entry["reason"]}'
        lines.append(f'| {entry["name"]} | {status} | {entry["frames"]} | '
                     + ' | '.join(format_number(values.get(name), '.4f')
                                  for name in PER_BAG_METRICS)
                     + f' | {entry["seconds"]:.1f} |')
    lines += ['', '## Worst bags (highest abs_rel)', '']
    lines += [f'- {entry["name"]}: abs_rel {format_number(entry[first]["abs_rel"], ".4f")}, '
              f'{entry["frames"]} frames' for entry in summary['worst_bags']]
    lines += ['', '## Worst frames (highest abs_rel)', '',
              '| bag | stamp (ns) | abs_rel | rmse | delta1 |', '|---|---:|---:|---:|---:|']
    lines += [f'| {frame["bag"]} | {frame["stamp_ns"]} | '
              f'{format_number(frame["abs_rel"], ".4f")} | '
              f'{format_number(frame["rmse"], ".4f")} | {format_number(frame["delta1"], ".4f")} |'
              for frame in summary['worst_frames']]
    return lines + ['']


def write_fleet_report(outcomes, out: Path) -> dict:
    """OUT/report (complete or absent): summary.json, report.md, bags.csv, worst_frames.csv."""
    from monodepth_ros.evaluation.report import write_report_md, write_summary
    from monodepth_ros.io.outputs import atomic_output

    summary = fleet_summary(outcomes)
    with atomic_output(out / 'report', 'folder', 'eval-fleet', replace_own=True) as folder:
        write_summary(summary, folder)
        report = write_report_md(summary, folder, [])
        report.write_text(report.read_text() + '\n' + '\n'.join(_fleet_markdown(summary)))
        caps = cap_keys(summary)
        _write_csv(folder / 'bags.csv', [
            {key: value for key, value in entry.items() if key not in caps}
            | {f'{cap}_{name}': entry.get(cap, {}).get(name) for cap in caps
               for name in PER_BAG_METRICS} for entry in summary['per_bag']])
        _write_csv(folder / 'worst_frames.csv', summary['worst_frames'])
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: '' if value is None or (isinstance(value, float)
                                                          and not math.isfinite(value))
                             else value for key, value in row.items()})
