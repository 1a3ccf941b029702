"""Shared test fixtures: where the real KITTI excerpt lives."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('MONODEPTH_SHARED_DATA', REPO_ROOT.parent / 'shared' / 'data'))
KITTI_RAW = SHARED_DATA / 'kitti_raw'
KITTI_DATE_DIR = KITTI_RAW / '2011_09_26'
KITTI_DRIVE_DIR = KITTI_DATE_DIR / '2011_09_26_drive_0009_sync'
EIGEN_REFERENCE = KITTI_RAW / 'eigen_gt_2011_09_26_drive_0009_frame0.npz'


@pytest.fixture(scope='session')
def kitti_drive_dir() -> Path:
    if not KITTI_DRIVE_DIR.is_dir():
        pytest.skip(f'KITTI excerpt not found at {KITTI_DRIVE_DIR} '
                    '(set MONODEPTH_SHARED_DATA to the folder holding kitti_raw/)')
    return KITTI_DRIVE_DIR
