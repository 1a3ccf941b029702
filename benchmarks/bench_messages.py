"""Message layer timings: PointCloud2 out, Image in, Velodyne PointCloud2 in.

Run: .venv/bin/python benchmarks/bench_messages.py [--repeats N]
Prints medians; the PointCloud2 build is compared with a plain copy of its output bytes,
measured in the same run.
"""

import argparse
import time

import numpy as np

from monodepth_ros.io.camera import CameraModel
from monodepth_ros.io.geometry import backproject_depth
from monodepth_ros.io.messages import (
    MessageTypes,
    array_to_image,
    image_to_array,
    make_header,
    make_pointcloud2,
    read_pointcloud2,
)

WIDTH, HEIGHT = 1242, 375
VELODYNE_POINTS = 120_000


def median_ms(function, repeats: int) -> float:
    function()  # warm up caches and lazy imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def velodyne_cloud(types, header, rng):
    layout = np.dtype({'names': ['x', 'y', 'z', 'intensity', 'ring', 'time'],
                       'formats': ['<f4', '<f4', '<f4', '<f4', '<u2', '<f4'],
                       'offsets': [0, 4, 8, 16, 20, 24], 'itemsize': 32})
    points = np.zeros(VELODYNE_POINTS, dtype=layout)
    for name in ('x', 'y', 'z', 'intensity', 'time'):
        points[name] = rng.normal(size=VELODYNE_POINTS)
    points['ring'] = rng.integers(0, 64, VELODYNE_POINTS)
    kinds = {'f4': 7, 'u2': 4}
    fields = [types.PointField(name=name, offset=offset, datatype=kinds[dtype.str[1:]], count=1)
              for name, (dtype, offset) in layout.fields.items()]
    return types.PointCloud2(header=header, height=1, width=VELODYNE_POINTS, fields=fields,
                             is_bigendian=False, point_step=32, row_step=32 * VELODYNE_POINTS,
                             data=types.uint8_array(points.tobytes()), is_dense=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=50)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    types = MessageTypes.rosbags('humble')
    header = make_header(types, 1_700_000_000_000_000_000, 'camera')
    camera = CameraModel.from_intrinsics(721.5377, 721.5377, 609.5593, 172.854, WIDTH, HEIGHT)
    depth = rng.uniform(2.0, 80.0, (HEIGHT, WIDTH)).astype(np.float32)
    depth[:60] = np.nan  # sky
    xyz = backproject_depth(depth, camera)
    rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3)).astype(np.uint8)

    cloud = make_pointcloud2(types, header, xyz, rgb=rgb)
    cloud_bytes = np.asarray(cloud.data)
    build_ms = median_ms(lambda: make_pointcloud2(types, header, xyz, rgb=rgb), args.repeats)
    copy_ms = median_ms(lambda: cloud_bytes.copy(), args.repeats)
    backproject_ms = median_ms(lambda: backproject_depth(depth, camera), args.repeats)

    image = array_to_image(types, rgb, 'rgb8', header)
    image_ms = median_ms(lambda: image_to_array(image), args.repeats)

    velodyne = velodyne_cloud(types, header, rng)
    names = ('x', 'y', 'z', 'intensity', 'ring', 'time')
    velodyne_ms = median_ms(lambda: read_pointcloud2(velodyne, names), args.repeats)

    mb = cloud_bytes.nbytes / 1e6
    rows = [
        (f'PointCloud2 xyz+rgb {WIDTH}x{HEIGHT} ({mb:.1f} MB) build', build_ms, '<= 4'),
        ('  copy of the same output bytes', copy_ms, ''),
        ('  ratio build / copy', build_ms / copy_ms, ''),
        (f'backproject_depth {WIDTH}x{HEIGHT}', backproject_ms, ''),
        (f'Image rgb8 {WIDTH}x{HEIGHT} -> array', image_ms, '<= 1'),
        (f'Velodyne PointCloud2 {VELODYNE_POINTS} points -> 6 arrays', velodyne_ms, '<= 5'),
    ]
    print(f'{"benchmark (median of " + str(args.repeats) + ")":58s} {"ms":>9s}  target ms')
    for name, value, target in rows:
        unit = 'x' if 'ratio' in name else ''
        print(f'{name:58s} {value:9.3f}{unit:1s} {target}')


if __name__ == '__main__':
    main()
