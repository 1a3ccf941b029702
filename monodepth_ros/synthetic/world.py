"""A procedural KITTI-like drive with exact depth, semantics and a 64-beam LiDAR.

The world is a straight road (lanes, dashed and solid markings, optional parking strips),
raised sidewalks with curbs, grass verges, buildings with windowed facades, parked and
moving cars, poles with signs and street lamps, trees, hedges and distant tree lines under a
sky gradient; optionally (``DriveConfig.junctions``) cross streets lined with buildings.
Everything is generated from the seed: road widths, object placement and
sizes, the camera height (1.65 m +- 0.1) and pitch (+- 2 deg; both can be set in
``DriveConfig``), ego speed, sun direction, colours and haze, so depth is not a function of the
image row alone. ``render(i, camera=...)`` renders through any pinhole camera (the training
camera sweep).

The world is made in 50 m chunks along the road, each from its own seeded generator, so
``render(i)`` gives the same frame whatever was rendered before. Camera pixels and LiDAR
beams are rays cast with one implementation (:mod:`monodepth_ros.synthetic.raycast`).

Frames (REP 103): world x forward along the road, y left, z up, ground z = 0. ``base_link``
sits on the ground under the LiDAR; the LiDAR (``velo_link``: x forward, y left, z up) is
pitched by the seed's pitch; the camera optical frame (z forward, x right, y down) sits
0.27 m in front of and 0.08 m below the LiDAR, as in KITTI.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from monodepth_ros.errors import ConfigError
from monodepth_ros.io.camera import CameraModel
from monodepth_ros.model.semantics import TRAIN_ID
from monodepth_ros.synthetic import raycast

KITTI_WIDTH, KITTI_HEIGHT = 1242, 375
KITTI_FX = KITTI_FY = 721.5377
KITTI_CX, KITTI_CY = 609.5593, 172.854
CHUNK_LENGTH = 50.0
CROSS_STREET_LENGTH = 120.0      # how far a cross street runs off to each side of the road

# Camera optical frame in the LiDAR frame (KITTI: camera ~0.27 m ahead, ~0.08 m below).
CAMERA_IN_LIDAR = np.array([0.27, 0.0, -0.08])
R_CAMERA_FROM_LIDAR = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])

# Surface materials; each maps to a Cityscapes trainId and a LiDAR reflectivity.
(SKY, ROAD, MARKING, SIDEWALK, TERRAIN, BUILDING, CAR, GLASS, POLE, SIGN, TRUNK, FOLIAGE,
 PERSON, WALL, FENCE, BICYCLE) = range(16)
MATERIAL_CLASS = np.array([
    TRAIN_ID['sky'], TRAIN_ID['road'], TRAIN_ID['road'], TRAIN_ID['sidewalk'],
    TRAIN_ID['terrain'], TRAIN_ID['building'], TRAIN_ID['car'], TRAIN_ID['car'],
    TRAIN_ID['pole'], TRAIN_ID['traffic sign'], TRAIN_ID['vegetation'],
    TRAIN_ID['vegetation'], TRAIN_ID['person'], TRAIN_ID['wall'], TRAIN_ID['fence'],
    TRAIN_ID['bicycle']], dtype=np.uint8)
MATERIAL_REFLECTIVITY = np.array(
    [0.0, 0.18, 0.75, 0.3, 0.4, 0.3, 0.55, 0.08, 0.45, 0.95, 0.3, 0.45, 0.3, 0.35, 0.4, 0.5],
    dtype=np.float32)


MAX_CAMERA_GRIDS = 4   # camera ray grids (and their skies) kept per drive


@dataclass(frozen=True)
class DriveConfig:
    """Sensor setup of a synthetic drive (the world itself comes from the seed).

    width/height: camera image size; the intrinsics are KITTI's scaled with
    ``CameraModel.scaled`` (so 416x128 renders a cheap, geometrically exact small image).
    """

    width: int = KITTI_WIDTH
    height: int = KITTI_HEIGHT
    frame_rate_hz: float = 10.0
    lidar_elevations_deg: tuple = tuple(np.linspace(-24.9, 2.0, 64).round(4))
    lidar_azimuth_steps: int = 1800
    lidar_max_range: float = 120.0
    max_distance: float = 300.0      # camera hits farther than this count as sky
    blur_sigma: float = 0.6          # slight optical blur of the RGB image (0 = off)
    # fx and fy are KITTI's times focal_scale (principal point unchanged): < 1 is a wider
    # lens, > 1 a longer one; the same scene then looks smaller or larger in the image.
    focal_scale: float = 1.0
    # Mounting of the camera: its height above the ground (metres) and pitch (degrees,
    # positive = nose down); None keeps the seed's (1.55-1.75 m, +-2 deg).
    camera_height: float | None = None
    pitch_deg: float | None = None
    # Heading of the car against the road (degrees, positive = to the left), as on a curve or
    # a lane change: straight ahead then looks at the facades of one side 40-80 m away.
    yaw_deg: float = 0.0
    # Street variety (walls, fences, vans, bicycles, pale facades, bays, clouds); False gives
    # the plainer world of earlier versions (for ablations).
    variety: bool = True
    # Probability that a 50 m stretch of road has a cross street: a gap in the kerbside
    # (buildings, trees, parked cars) through which a street lined with buildings runs off to
    # the side. 0 keeps the world of earlier versions exactly.
    junctions: float = 0.0

    def __post_init__(self):
        if self.width < 8 or self.height < 8:
            raise ConfigError(f'DriveConfig size {self.width}x{self.height} is too small, '
                              'expected at least 8x8')
        if self.frame_rate_hz <= 0:
            raise ConfigError(f'DriveConfig frame_rate_hz={self.frame_rate_hz}, expected > 0')
        if not 0.2 <= self.focal_scale <= 5.0:
            raise ConfigError(f'DriveConfig focal_scale={self.focal_scale}, expected 0.2..5')
        if self.camera_height is not None and not 0.3 <= self.camera_height <= 5.0:
            raise ConfigError(f'DriveConfig camera_height={self.camera_height} m, expected '
                              '0.3..5')
        if self.pitch_deg is not None and abs(self.pitch_deg) > 30.0:
            raise ConfigError(f'DriveConfig pitch_deg={self.pitch_deg}, expected -30..30')
        if not 0.0 <= self.junctions <= 1.0:
            raise ConfigError(f'DriveConfig junctions={self.junctions}, expected a probability '
                              'in 0..1')
        if abs(self.yaw_deg) > 45.0:
            raise ConfigError(f'DriveConfig yaw_deg={self.yaw_deg}, expected -45..45')
        if len(self.lidar_elevations_deg) < 1 or self.lidar_azimuth_steps < 8:
            raise ConfigError('DriveConfig LiDAR needs at least one beam and 8 azimuth steps')


@dataclass
class SyntheticFrame:
    index: int
    stamp_ns: int
    rgb: np.ndarray                  # (H, W, 3) uint8
    depth: np.ndarray                # (H, W) float32 metres along the optical axis, NaN = sky
    semantics: np.ndarray            # (H, W) uint8 Cityscapes trainIds
    lidar: dict | None               # x, y, z, intensity float32; ring uint16 (LiDAR frame)
    camera: CameraModel | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SceneParameters:
    """Everything about one seed's world that is not a per-chunk object."""

    lane_width: float
    parking_left: float
    parking_right: float
    sidewalk_left: float
    sidewalk_right: float
    sidewalk_height: float
    urban_left: float                # probability that a building stands on a plot
    urban_right: float
    tree_density: float
    parked_density: float
    camera_height: float
    pitch: float                     # radians, positive = nose down
    ego_offset: float                # lateral offset of the ego car in its lane
    ego_speed: float
    oncoming_speed: float
    oncoming_gap: float
    lead_gap: float                  # 0 = no lead car
    lead_speed: float
    sun: np.ndarray                  # unit vector towards the sun (world)
    sun_color: np.ndarray
    ambient: np.ndarray
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    haze_distance: float
    exposure: float
    asphalt: float
    marking_yellow: bool
    # Street variety (drawn from a stream of its own): walls and fences along the plots,
    # vans among the parked cars, bicycles, pale facades, bays on facades, clouds.
    wall_density: float = 0.0
    van_fraction: float = 0.0
    bicycle_density: float = 0.0
    pale_facades: float = 0.0
    facade_relief: float = 0.0
    cloudiness: float = 0.0

    def road_left(self) -> float:
        return self.lane_width + self.parking_left

    def road_right(self) -> float:
        return self.lane_width + self.parking_right


def _scene_parameters(seed: int, variety: bool = True) -> SceneParameters:
    rng = np.random.default_rng([seed, 0])
    sun_elevation = rng.uniform(np.deg2rad(15), np.deg2rad(65))
    sun_azimuth = rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(sun_elevation) * np.cos(sun_azimuth),
                    np.cos(sun_elevation) * np.sin(sun_azimuth), np.sin(sun_elevation)])
    warmth = rng.uniform(-0.08, 0.12)
    overcast = rng.uniform(0.0, 1.0)
    sun_strength = 1.0 - 0.7 * overcast
    zenith = np.array([0.25, 0.45, 0.85]) * (1 - overcast) + np.array([0.6, 0.62, 0.66]) * overcast
    horizon = np.array([0.75, 0.82, 0.92]) * (1 - overcast) + np.array([0.8, 0.8, 0.82]) * overcast
    return SceneParameters(
        lane_width=rng.uniform(3.0, 3.8),
        parking_left=float(rng.choice([0.0, 2.2])),
        parking_right=float(rng.choice([0.0, 2.2, 2.2])),
        sidewalk_left=rng.uniform(1.5, 4.0),
        sidewalk_right=rng.uniform(1.5, 4.0),
        sidewalk_height=rng.uniform(0.1, 0.18),
        urban_left=rng.uniform(0.2, 1.0),
        urban_right=rng.uniform(0.2, 1.0),
        tree_density=rng.uniform(0.1, 0.8),
        parked_density=rng.uniform(0.3, 0.9),
        camera_height=rng.uniform(1.55, 1.75),
        pitch=np.deg2rad(rng.uniform(-2.0, 2.0)),
        ego_offset=rng.uniform(-0.3, 0.3),
        ego_speed=rng.uniform(9.0, 11.0),
        oncoming_speed=-rng.uniform(7.0, 13.0),
        oncoming_gap=rng.uniform(25.0, 70.0),
        lead_gap=float(rng.uniform(12.0, 35.0) if rng.random() < 0.6 else 0.0),
        lead_speed=rng.uniform(0.0, 2.0),
        sun=sun,
        sun_color=sun_strength * np.array([1.0 + warmth, 0.97, 0.92 - warmth]) * 0.85,
        ambient=np.array([0.36, 0.39, 0.45]) * rng.uniform(0.8, 1.15) + 0.15 * overcast,
        sky_horizon=horizon,
        sky_zenith=zenith,
        haze_distance=rng.uniform(120.0, 500.0),
        exposure=rng.uniform(0.85, 1.15),
        asphalt=rng.uniform(0.22, 0.38),
        marking_yellow=bool(rng.random() < 0.2),
        **(_variety_parameters(seed) if variety else {}),
    )


def _variety_parameters(seed: int) -> dict:
    rng = np.random.default_rng([seed, 5])
    return {'wall_density': rng.uniform(0.0, 0.6), 'van_fraction': rng.uniform(0.0, 0.35),
            'bicycle_density': rng.uniform(0.0, 0.5), 'pale_facades': rng.uniform(0.0, 0.6),
            'facade_relief': rng.uniform(0.0, 0.8), 'cloudiness': rng.uniform(0.0, 1.0)}


class _ObjectList:
    """Objects as parallel lists; ``arrays()`` turns them into the arrays the caster uses."""

    def __init__(self):
        self.kind, self.material, self.bmin, self.bmax, self.color, self.param = (
            [], [], [], [], [], [])
        # Parts of one thing (a car's body and glass, a tree's trunk and crown) share a group,
        # so that a junction removes them together.
        self.group = []
        self._groups = 0

    def new_group(self) -> int:
        self._groups += 1
        return self._groups

    def add(self, kind, material, bmin, bmax, color, param=(0.0, 0.0, 0.0), group=None):
        self.group.append(self.new_group() if group is None else group)
        self.kind.append(kind)
        self.material.append(material)
        self.bmin.append(bmin)
        self.bmax.append(bmax)
        self.color.append(color)
        self.param.append(param)

    def box(self, material, x0, x1, y0, y1, z0, z1, color, param=(0.0, 0.0, 0.0), group=None):
        self.add(raycast.BOX, material, (min(x0, x1), min(y0, y1), z0),
                 (max(x0, x1), max(y0, y1), z1), color, param, group)

    def sphere(self, material, center, radius, color, group=None):
        center = np.asarray(center, dtype=np.float64)
        self.add(raycast.SPHERE, material, center - radius, center + radius, color, group=group)

    def without_span(self, x_lo: float, x_hi: float) -> _ObjectList:
        """The objects with the stretch x_lo..x_hi cleared.

        Kerbside strips (sidewalks, buildings, walls, fences, hedges) are cut around it; any
        other thing touching it is removed with every part of its group.
        """
        across = [hi[0] > x_lo and lo[0] < x_hi for lo, hi in zip(self.bmin, self.bmax)]
        touching = {self.group[i] for i in range(len(self.kind))
                    if across[i] and not self._strip(i)}
        kept = _ObjectList()
        kept._groups = self._groups
        for i in range(len(self.kind)):
            lo, hi = self.bmin[i], self.bmax[i]
            if self.group[i] in touching:
                continue
            pieces = [(lo[0], hi[0])]
            if across[i]:   # a strip (anything else across it was removed above)
                pieces = [(a, b) for a, b in ((lo[0], x_lo), (x_hi, hi[0])) if b - a > 0.05]
            for a, b in pieces:
                kept.add(self.kind[i], self.material[i], (a, lo[1], lo[2]), (b, hi[1], hi[2]),
                         self.color[i], self.param[i], self.group[i])
        return kept

    def _strip(self, index: int) -> bool:
        return (self.kind[index] == raycast.BOX
                and self.material[index] in (SIDEWALK, BUILDING, WALL, FENCE, FOLIAGE))

    def car(self, rng, x_center, y_center, color=None, van: bool = False):
        length = rng.uniform(3.8, 4.9)
        width = rng.uniform(1.65, 1.9)
        body = rng.uniform(0.85, 1.0)
        height = rng.uniform(1.4, 1.6)
        if color is None:
            color = _car_color(rng)
        front = rng.uniform(0.22, 0.3) * length
        back = rng.uniform(0.12, 0.2) * length
        if van:   # a delivery van: longer, wider, a tall body with a short bonnet
            length, width, body, height = length * 1.15, width * 1.08, 1.55, 2.25
            front, back = 0.18 * length, 0.02 * length
        x0, x1 = x_center - length / 2, x_center + length / 2
        y0, y1 = y_center - width / 2, y_center + width / 2
        group = self.new_group()
        self.box(CAR, x0, x1, y0, y1, 0.0, body, color, group=group)
        self.box(GLASS, x0 + back, x1 - front, y0 + 0.1, y1 - 0.1, body, height, color,
                 group=group)

    def arrays(self):
        count = len(self.kind)
        return {
            'kind': np.asarray(self.kind, dtype=np.int8).reshape(count),
            'material': np.asarray(self.material, dtype=np.int8).reshape(count),
            'bmin': np.asarray(self.bmin, dtype=np.float64).reshape(count, 3),
            'bmax': np.asarray(self.bmax, dtype=np.float64).reshape(count, 3),
            'color': np.asarray(self.color, dtype=np.float32).reshape(count, 3),
            'param': np.asarray(self.param, dtype=np.float32).reshape(count, 3),
        }


def _facade_color(rng) -> np.ndarray:
    """A building's colour, partly desaturated (three draws from ``rng``)."""
    color = np.array([rng.uniform(0.45, 0.9), rng.uniform(0.4, 0.85), rng.uniform(0.35, 0.8)])
    return color * 0.7 + color.mean() * 0.3


def _facade_windows(rng) -> tuple[float, float, float]:
    """A facade's windows for the shader: column spacing, storey height, window width share."""
    return rng.uniform(1.8, 3.2), rng.uniform(2.8, 3.6), rng.uniform(0.35, 0.65)


def _car_color(rng) -> np.ndarray:
    palette = np.array([[0.85, 0.85, 0.85], [0.08, 0.08, 0.09], [0.5, 0.52, 0.55],
                        [0.55, 0.08, 0.07], [0.1, 0.18, 0.45], [0.75, 0.75, 0.7],
                        [0.2, 0.3, 0.25], [0.7, 0.55, 0.2]])
    return palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1)


def _concat(parts):
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


@lru_cache(maxsize=8)
def _noise_tile(seed: int) -> np.ndarray:
    """A 256x256 tileable noise texture in [0, 1] with a few octaves."""
    rng = np.random.default_rng([seed, 99])
    tile = np.zeros((256, 256), dtype=np.float64)
    for cells, weight in ((8, 0.4), (32, 0.3), (128, 0.2), (256, 0.1)):
        coarse = rng.random((cells, cells))
        repeat = 256 // cells
        # Smooth the coarse grid by averaging shifted copies (tileable, no seams).
        fine = np.kron(coarse, np.ones((repeat, repeat)))
        for axis in (0, 1):
            fine = sum(np.roll(fine, shift, axis=axis) for shift in range(repeat)) / repeat
        tile += weight * fine
    tile = (tile - tile.min()) / (tile.max() - tile.min())
    return tile.astype(np.float32)


class SyntheticDrive:
    """A deterministic drive through a procedural world (see the module docstring)."""

    def __init__(self, seed: int = 0, config: DriveConfig | None = None):
        if int(seed) < 0:
            raise ConfigError(f'synthetic drive seed {seed} is negative, expected >= 0')
        self.seed = int(seed)
        self.config = config or DriveConfig()
        self.scene = _scene_parameters(self.seed, self.config.variety)
        self.frame_rate_hz = self.config.frame_rate_hz
        focal = self.config.focal_scale
        full = CameraModel.from_intrinsics(KITTI_FX * focal, KITTI_FY * focal, KITTI_CX,
                                           KITTI_CY, KITTI_WIDTH, KITTI_HEIGHT)
        self.full_camera = full
        self.camera = self._camera_for((self.config.width, self.config.height))
        T = np.eye(4)
        T[:3, :3] = R_CAMERA_FROM_LIDAR
        T[:3, 3] = -R_CAMERA_FROM_LIDAR @ CAMERA_IN_LIDAR
        self.T_camera_from_lidar = T
        if self.config.camera_height is not None:
            self.scene = replace(self.scene, camera_height=float(self.config.camera_height))
        if self.config.pitch_deg is not None:
            self.scene = replace(self.scene, pitch=float(np.deg2rad(self.config.pitch_deg)))
        pitch = self.scene.pitch
        rotation = np.array([[np.cos(pitch), 0.0, np.sin(pitch)], [0.0, 1.0, 0.0],
                             [-np.sin(pitch), 0.0, np.cos(pitch)]])
        yaw = np.deg2rad(self.config.yaw_deg)
        self._heading = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
        # Put the camera at the seed's height above the ground (base_link is on the ground).
        lidar_height = self.scene.camera_height - (rotation @ CAMERA_IN_LIDAR)[2]
        T_base = np.eye(4)
        T_base[:3, :3] = rotation
        T_base[:3, 3] = (0.0, 0.0, lidar_height)
        self.T_base_from_lidar = T_base
        self.T_base_from_camera = T_base @ np.linalg.inv(T)
        self.camera_height = float(self.T_base_from_camera[2, 3])
        self._camera_grids: dict[tuple, raycast.CameraGrid] = {}
        self._lidar_grid: raycast.LidarGrid | None = None
        self._sky_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._chunks: dict[int, dict] = {}
        self._noise_texture = _noise_tile(self.seed)

    # -- poses ------------------------------------------------------------------------------
    def stamp_ns(self, index: int) -> int:
        # A fixed, plausible epoch start keeps stamps positive and far from zero.
        return 1_600_000_000_000_000_000 + int(round(index * 1e9 / self.frame_rate_hz))

    def T_world_from_base(self, index: int) -> np.ndarray:
        T = np.eye(4)
        T[:2, :2] = self._heading
        T[0, 3] = self.scene.ego_speed * index / self.frame_rate_hz
        T[1, 3] = -self.scene.lane_width / 2 + self.scene.ego_offset
        return T

    def T_world_from_camera(self, index: int) -> np.ndarray:
        return self.T_world_from_base(index) @ self.T_base_from_camera

    def T_world_from_lidar(self, index: int) -> np.ndarray:
        return self.T_world_from_base(index) @ self.T_base_from_lidar

    # -- world ------------------------------------------------------------------------------
    def _chunk(self, k: int) -> dict:
        if k not in self._chunks:
            if len(self._chunks) > 64:
                self._chunks.clear()
            self._chunks[k] = self._make_chunk(k)
        return self._chunks[k]

    def _make_chunk(self, k: int) -> dict:
        s = self.scene
        rng = np.random.default_rng([self.seed, 1, k + 1_000_000])
        # Street variety has a stream of its own: the layout above it stays as it was.
        extra = np.random.default_rng([self.seed, 4, k + 1_000_000])
        objects = _ObjectList()
        x0, x1 = k * CHUNK_LENGTH, (k + 1) * CHUNK_LENGTH
        for side in (1, -1):
            road = s.road_left() if side > 0 else s.road_right()
            walk = s.sidewalk_left if side > 0 else s.sidewalk_right
            urban = s.urban_left if side > 0 else s.urban_right
            parking = s.parking_left if side > 0 else s.parking_right
            paving = np.array([0.62, 0.6, 0.57]) * rng.uniform(0.85, 1.1)
            objects.box(SIDEWALK, x0, x1, side * road, side * (road + walk), 0.0,
                        s.sidewalk_height, paving, (0.3 + 0.3 * rng.random(), 0.0, 0.0))
            back = road + walk
            # Buildings (or grass plots with trees and hedges) behind the sidewalk.
            cursor = x0 + rng.uniform(0.0, 6.0)
            while cursor < x1 - 4.0:
                length = min(rng.uniform(8.0, 28.0), x1 - cursor)
                if rng.random() < urban:
                    setback = rng.uniform(0.0, 1.0) if rng.random() < 0.6 else rng.uniform(
                        1.0, 6.0)
                    front = back + setback
                    depth = rng.uniform(8.0, 16.0)
                    height = rng.uniform(5.0, 22.0)
                    color = _facade_color(rng)
                    if extra.random() < s.pale_facades:
                        color = np.full(3, extra.uniform(0.78, 0.95)) + extra.uniform(
                            -0.04, 0.04, 3)
                    param = _facade_windows(rng)
                    objects.box(BUILDING, cursor, cursor + length, side * front,
                                side * (front + depth), 0.0, height, color, param)
                    if extra.random() < s.facade_relief and height > 6.0 and length > 6.0:
                        # Bays and balconies: boxes standing out of the facade.
                        for _ in range(int(extra.integers(1, 4))):
                            width = extra.uniform(2.0, min(6.0, length - 1.0))
                            start = cursor + extra.uniform(0.0, length - width)
                            bottom = extra.uniform(2.5, max(height - 3.0, 2.6))
                            top = min(height, bottom + extra.uniform(1.0, 3.5))
                            out = extra.uniform(0.4, 1.2)
                            objects.box(BUILDING, start, start + width,
                                        side * max(front - out, back + 0.2), side * front,
                                        bottom, top, color * extra.uniform(0.8, 1.05), param)
                    if setback > 2.5 and rng.random() < 0.5:
                        objects.box(FOLIAGE, cursor, cursor + length, side * (back + 0.3),
                                    side * (back + 1.1), 0.0, rng.uniform(0.7, 1.5),
                                    np.array([0.2, 0.32, 0.12]) * rng.uniform(0.8, 1.2))
                else:
                    if rng.random() < 0.5:
                        objects.box(FOLIAGE, cursor, cursor + length, side * (back + 0.3),
                                    side * (back + 1.2), 0.0, rng.uniform(0.8, 1.8),
                                    np.array([0.2, 0.32, 0.12]) * rng.uniform(0.8, 1.2))
                    if rng.random() < 0.7:
                        # A distant tree line gives depth to open areas.
                        distance = rng.uniform(15.0, 60.0)
                        objects.box(FOLIAGE, cursor, cursor + length, side * (back + distance),
                                    side * (back + distance + 6.0), 0.0, rng.uniform(6.0, 14.0),
                                    np.array([0.16, 0.26, 0.1]) * rng.uniform(0.7, 1.2))
                cursor += length + rng.uniform(0.0, 6.0)
            # Trees on the verge / sidewalk.
            x = x0 + rng.uniform(0.0, 15.0)
            while x < x1:
                if rng.random() < s.tree_density:
                    y = side * (road + rng.uniform(0.6, max(walk - 0.4, 0.7)))
                    trunk_h = rng.uniform(1.8, 3.5)
                    radius = rng.uniform(1.3, 3.0)
                    thick = rng.uniform(0.2, 0.4) / 2
                    crown_y = y + side * 0.3
                    crown_z = trunk_h + radius * 0.8
                    if radius > abs(crown_y) - road:
                        # Street trees are trimmed: a crown over the road starts above 3.2 m.
                        crown_z = max(crown_z, 3.2 + radius)
                    tree = objects.new_group()
                    objects.box(TRUNK, x - thick, x + thick, y - thick, y + thick, 0.0,
                                crown_z - radius * 0.3, np.array([0.3, 0.22, 0.15]), group=tree)
                    objects.sphere(FOLIAGE, (x, crown_y, crown_z), radius,
                                   np.array([0.2, 0.34, 0.12]) * rng.uniform(0.7, 1.25),
                                   group=tree)
                x += rng.uniform(8.0, 20.0)
            # Poles, some with a sign, some with a lamp arm over the road.
            x = x0 + rng.uniform(0.0, 30.0)
            while x < x1:
                y = side * (road + 0.45)
                height = rng.uniform(5.0, 9.0)
                r = rng.uniform(0.07, 0.13)
                grey = np.array([0.5, 0.5, 0.52]) * rng.uniform(0.7, 1.2)
                pole = objects.new_group()
                objects.box(POLE, x - r, x + r, y - r, y + r, 0.0, height, grey, group=pole)
                if rng.random() < 0.5:
                    z = rng.uniform(2.0, 2.8)
                    sign_color = [np.array([0.1, 0.25, 0.7]), np.array([0.85, 0.85, 0.85]),
                                  np.array([0.8, 0.1, 0.1]), np.array([0.9, 0.75, 0.1])][
                        rng.integers(4)]
                    objects.box(SIGN, x - r - 0.04, x - r, y - 0.35, y + 0.35, z, z + 0.65,
                                sign_color, group=pole)
                if rng.random() < 0.5:
                    arm = rng.uniform(1.5, 3.0)
                    objects.box(POLE, x - r, x + r, y, y - side * arm, height - 0.2, height,
                                grey, group=pole)
                x += rng.uniform(20.0, 45.0)
            # Pedestrians on the sidewalk: a body box (darker legs) and a head.
            x = x0 + rng.uniform(0.0, 20.0)
            while x < x1:
                y = side * (road + rng.uniform(0.5, max(walk - 0.4, 0.6)))
                height = rng.uniform(1.55, 1.9)
                top = s.sidewalk_height + height - 0.24
                clothes = np.array([rng.uniform(0.05, 0.7), rng.uniform(0.05, 0.6),
                                    rng.uniform(0.05, 0.7)])
                person = objects.new_group()
                objects.box(PERSON, x - 0.14, x + 0.14, y - 0.22, y + 0.22, 0.0, top, clothes,
                            group=person)
                objects.sphere(PERSON, (x, y, top + 0.12), 0.12,
                               np.array([0.75, 0.55, 0.42]) * rng.uniform(0.5, 1.1),
                               group=person)
                x += rng.uniform(6.0, 60.0)
            # Parked cars along the curb.
            if parking > 0:
                x = x0 + rng.uniform(0.0, 8.0)
                while x < x1:
                    if rng.random() < s.parked_density:
                        objects.car(rng, x + 2.5, side * (road - 1.05 + rng.uniform(-0.1, 0.1)),
                                    van=bool(extra.random() < s.van_fraction))
                    x += rng.uniform(5.5, 8.0)
            self._walls_and_bicycles(objects, extra, side, road, walk, x0, x1)
        span = self._junction_span(k)
        if span is not None:
            objects = objects.without_span(*span)
            self._cross_street(objects, np.random.default_rng([self.seed, 7, k + 1_000_000]),
                               *span)
        return objects.arrays()

    def _junction_span(self, k: int) -> tuple[float, float] | None:
        """The x extent of chunk k's cross street (kerb to kerb), or None."""
        if self.config.junctions <= 0.0:
            return None
        rng = np.random.default_rng([self.seed, 6, k + 1_000_000])
        if rng.random() >= self.config.junctions:
            return None
        start = k * CHUNK_LENGTH + rng.uniform(5.0, 25.0)
        return start, start + rng.uniform(12.0, 20.0)

    def _cross_street(self, objects, rng, x_lo: float, x_hi: float) -> None:
        """A street running off to both sides between x_lo and x_hi.

        Its sidewalks, the buildings along it behind the corner plots, and sometimes one
        closing its far end.
        """
        s = self.scene
        length = CROSS_STREET_LENGTH
        for side in (1, -1):
            road = s.road_left() if side > 0 else s.road_right()
            back = road + (s.sidewalk_left if side > 0 else s.sidewalk_right)
            walk = rng.uniform(1.5, 3.0)
            paving = np.array([0.62, 0.6, 0.57]) * rng.uniform(0.85, 1.1)
            for a, b in ((x_lo, x_lo + walk), (x_hi - walk, x_hi)):
                objects.box(SIDEWALK, a, b, side * road, side * (road + length), 0.0,
                            s.sidewalk_height, paving, (0.3 + 0.3 * rng.random(), 0.0, 0.0))
            for facing, edge in ((-1, x_lo), (1, x_hi)):
                y = back + rng.uniform(18.0, 24.0)
                while y < road + length - 8.0:
                    size = rng.uniform(8.0, 25.0)
                    if rng.random() < max(s.urban_left if side > 0 else s.urban_right, 0.5):
                        front = edge + facing * rng.uniform(0.0, 3.0)
                        depth = rng.uniform(8.0, 16.0)
                        color = _facade_color(rng)
                        objects.box(BUILDING, front, front + facing * depth, side * y,
                                    side * (y + size), 0.0, rng.uniform(5.0, 22.0), color,
                                    _facade_windows(rng))
                    y += size + rng.uniform(0.0, 4.0)
            if rng.random() < 0.5:
                end = road + rng.uniform(40.0, length)
                objects.box(BUILDING, x_lo - 5.0, x_hi + 5.0, side * end, side * (end + 10.0),
                            0.0, rng.uniform(6.0, 20.0),
                            np.array([rng.uniform(0.5, 0.85), rng.uniform(0.45, 0.8),
                                      rng.uniform(0.4, 0.75)]), _facade_windows(rng))

    def _in_cross_street(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether ground points (x, y) lie on a cross street (within its length)."""
        inside = np.zeros(x.shape, dtype=bool)
        if self.config.junctions <= 0.0 or not x.size:
            return inside
        s = self.scene
        along = (y < s.road_left() + CROSS_STREET_LENGTH) & (
            y > -s.road_right() - CROSS_STREET_LENGTH)
        chunks = np.floor(x / CHUNK_LENGTH).astype(np.int64)
        for k in np.unique(chunks):
            span = self._junction_span(int(k))
            if span is not None:
                inside |= (x >= span[0]) & (x <= span[1]) & along
        return inside

    def _walls_and_bicycles(self, objects, rng, side, road, walk, x0, x1) -> None:
        """Garden walls and fences at the back of the sidewalk; bicycles parked on it."""
        s = self.scene
        back = road + walk
        x = x0 + rng.uniform(0.0, 10.0)
        while x < x1 - 3.0:
            length = min(rng.uniform(6.0, 30.0), x1 - x)
            if rng.random() < s.wall_density:
                y = side * (back + rng.uniform(0.05, 0.4))
                if rng.random() < 0.5:
                    tone = rng.uniform(0.45, 0.95)
                    color = np.full(3, tone) * np.array([1.0, 0.98, 0.95]) * rng.uniform(
                        0.9, 1.05, 3)
                    objects.box(WALL, x, x + length, y, y + side * rng.uniform(0.2, 0.35), 0.0,
                                rng.uniform(1.2, 3.0), color)
                else:
                    color = np.array([0.35, 0.3, 0.25]) * rng.uniform(0.5, 1.6)
                    objects.box(FENCE, x, x + length, y, y + side * 0.06, 0.0,
                                rng.uniform(0.9, 2.0), color, (rng.uniform(0.1, 0.25), 0.0, 0.0))
            x += length + rng.uniform(0.0, 15.0)
        x = x0 + rng.uniform(0.0, 25.0)
        while x < x1:
            if rng.random() < s.bicycle_density:
                y = side * (road + rng.uniform(0.3, max(walk - 0.3, 0.4)))
                frame = np.array([0.1, 0.1, 0.12]) if rng.random() < 0.5 else _car_color(rng)
                bicycle = objects.new_group()
                objects.box(BICYCLE, x - 0.85, x + 0.85, y - 0.05, y + 0.05, 0.0, 1.0, frame,
                            group=bicycle)
                if rng.random() < 0.3:   # someone standing with the bicycle
                    clothes = rng.uniform(0.05, 0.7, 3)
                    objects.box(PERSON, x - 0.2, x + 0.2, y - side * 0.55, y - side * 0.15, 0.0,
                                rng.uniform(1.5, 1.65) + s.sidewalk_height, clothes,
                                group=bicycle)
            x += rng.uniform(4.0, 30.0)

    def _traffic(self, time_s: float) -> dict:
        """Moving cars at a time: one oncoming stream and maybe a lead car in our lane."""
        s = self.scene
        objects = _ObjectList()
        ego_x = s.ego_speed * time_s
        # The oncoming stream is generated in its own moving frame x' = x - v t.
        shift = s.oncoming_speed * time_s
        lo, hi = ego_x - 130.0 - shift, ego_x + 260.0 - shift
        for k in range(int(np.floor(lo / 100.0)), int(np.floor(hi / 100.0)) + 1):
            rng = np.random.default_rng([self.seed, 2, k + 1_000_000])
            x = k * 100.0 + rng.uniform(0.0, s.oncoming_gap)
            while x < (k + 1) * 100.0:
                objects.car(rng, x + shift, s.lane_width / 2 + rng.uniform(-0.25, 0.25))
                x += s.oncoming_gap * rng.uniform(0.6, 1.6)
        if s.lead_gap > 0:
            rng = np.random.default_rng([self.seed, 3])
            objects.car(rng, ego_x + s.lead_gap + 2.5 + s.lead_speed * time_s,
                        -s.lane_width / 2 + rng.uniform(-0.2, 0.2))
        return objects.arrays()

    def objects_at(self, index: int) -> dict:
        """All objects (static and moving) that may be seen at frame ``index``."""
        time_s = index / self.frame_rate_hz
        ego_x = self.scene.ego_speed * time_s
        first = int(np.floor((ego_x - 130.0) / CHUNK_LENGTH))
        last = int(np.floor((ego_x + 260.0) / CHUNK_LENGTH))
        parts = [self._chunk(k) for k in range(first, last + 1)]
        parts.append(self._traffic(time_s))
        return _concat(parts)

    # -- sensors ----------------------------------------------------------------------------
    def _camera_for(self, size) -> CameraModel:
        width, height = int(size[0]), int(size[1])
        if (width, height) == (KITTI_WIDTH, KITTI_HEIGHT):
            return self.full_camera
        return self.full_camera.scaled(width, height)

    def _camera_grid(self, camera: CameraModel) -> raycast.CameraGrid:
        key = (camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy)
        if key not in self._camera_grids:
            if len(self._camera_grids) >= MAX_CAMERA_GRIDS:
                # A camera sweep renders through a new camera per frame: bound the memory.
                # The sky cache is keyed by grid, so it goes with the grids.
                self._camera_grids.clear()
                self._sky_cache.clear()
            self._camera_grids[key] = raycast.CameraGrid(
                camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
                self.T_base_from_camera[:3, :3])
        return self._camera_grids[key]

    def _lidar(self) -> raycast.LidarGrid:
        if self._lidar_grid is None:
            self._lidar_grid = raycast.LidarGrid(
                self.config.lidar_elevations_deg, self.config.lidar_azimuth_steps,
                self.T_base_from_lidar[:3, :3])
        return self._lidar_grid

    def _cast(self, grid: raycast.RayGrid, T_world_from_sensor, objects, max_distance):
        origin = T_world_from_sensor[:3, 3]
        # Objects wholly beyond the sensor's range cannot be hit: drop them first (t is the
        # range for unit rays, the depth for camera rays, which are up to max_ray_length long).
        gap = np.maximum(np.maximum(objects['bmin'] - origin, origin - objects['bmax']), 0.0)
        reach = max_distance * grid.max_ray_length * 1.001
        near = np.flatnonzero(np.sqrt((gap ** 2).sum(axis=1)) <= reach)
        if near.size < len(gap):
            objects = {key: value[near] for key, value in objects.items()}
        corners = raycast.box_corners(objects['bmin'], objects['bmax'])
        # World -> sensor: the rotation is the same in every frame (the road is straight).
        local = (corners - origin) @ T_world_from_sensor[:3, :3]
        windows = grid.windows(local)
        t, hit = raycast.cast(grid, origin, objects['kind'], objects['bmin'], objects['bmax'],
                              windows, max_distance)
        return t, hit, objects

    def render(self, index: int, lidar: bool = True, size=None,
               camera: CameraModel | None = None) -> SyntheticFrame:
        """Render frame ``index``: RGB, depth, semantics and (optionally) the LiDAR scan.

        size: (width, height) to render at instead of the config's size (intrinsics scaled);
        camera: any pinhole camera to render through instead (same mounting).
        """
        if int(index) < 0:
            raise ConfigError(f'frame index {index} is negative, expected >= 0')
        index = int(index)
        if camera is None:
            camera = self.camera if size is None else self._camera_for(size)
        objects = self.objects_at(index)
        T_wc = self.T_world_from_camera(index)
        grid = self._camera_grid(camera)
        t, hit, objects = self._cast(grid, T_wc, objects, self.config.max_distance)
        surface = self._surface(grid, T_wc[:3, 3], t, hit, objects)
        valid = hit >= 0
        depth = np.where(valid, t, np.float32(np.nan)).astype(np.float32)
        rgb = self._shade(grid, T_wc[:3, 3], t, hit, surface, objects)
        semantics = MATERIAL_CLASS[surface['material']]
        scan = self._scan(index, objects) if lidar else None
        return SyntheticFrame(index=index, stamp_ns=self.stamp_ns(index), rgb=rgb, depth=depth,
                              semantics=semantics, lidar=scan, camera=camera)

    def _scan(self, index: int, objects: dict) -> dict:
        grid = self._lidar()
        T_wl = self.T_world_from_lidar(index)
        t, hit, objects = self._cast(grid, T_wl, objects, self.config.lidar_max_range)
        surface = self._surface(grid, T_wl[:3, 3], t, hit, objects)
        keep = np.flatnonzero(hit.ravel() >= 0)
        distance = t.ravel()[keep]
        local = grid.local_dirs.reshape(-1, 3)[keep].astype(np.float32)
        normal, dirs = surface['normal'], grid.dirs
        incidence = np.abs(sum(normal[a].ravel()[keep] * dirs[a].ravel()[keep] for a in range(3)))
        reflect = MATERIAL_REFLECTIVITY[surface['material'].ravel()[keep]]
        intensity = np.clip(reflect * (0.3 + 0.7 * incidence), 0.0, 1.0).astype(np.float32)
        ring = (keep // grid.cols).astype(np.uint16)
        return {'x': local[:, 0] * distance, 'y': local[:, 1] * distance,
                'z': local[:, 2] * distance, 'intensity': intensity, 'ring': ring}

    # -- surfaces ---------------------------------------------------------------------------
    def _surface(self, grid, origin, t, hit, objects) -> dict:
        """Material, world hit point and normal of every ray (material SKY for misses).

        Arrays are flat over the grid except ``material`` and the normal components, which
        keep the grid shape. ``objs`` are the flat indices of object hits, ``ids`` their
        object indices and ``face`` the box face hit (0-2: -x/-y/-z, 3-5: +x/+y/+z).
        """
        s = self.scene
        shape = t.shape
        flat_hit = hit.ravel()
        flat_t = t.ravel()
        material = np.full(flat_hit.size, SKY, dtype=np.int8)
        normal = [np.zeros(flat_hit.size, dtype=np.float32) for _ in range(3)]
        valid = flat_hit >= 0
        tt = np.where(valid, flat_t, np.float32(0.0))
        point = [np.float32(origin[axis]) + tt * grid.dirs[axis].ravel() for axis in range(3)]
        # Ground plane: road (with markings) between the curbs, terrain beyond.
        ground = np.flatnonzero(flat_hit == 0)
        gx, gy = point[0][ground], point[1][ground]
        is_road = ((gy < s.road_left()) & (gy > -s.road_right())) | self._in_cross_street(gx,
                                                                                         gy)
        ground_material = np.where(is_road, np.int8(ROAD), np.int8(TERRAIN))
        ground_material[is_road & self._markings(gx, gy)] = MARKING
        material[ground] = ground_material
        normal[2][ground] = 1.0
        objs = np.flatnonzero(flat_hit > 0)
        ids = flat_hit[objs] - 1
        material[objs] = objects['material'][ids]
        px, py, pz = point[0][objs], point[1][objs], point[2][objs]
        # Planar (3, n) copies: contiguous rows are much faster than (n, 3) columns.
        lo = np.ascontiguousarray(objects['bmin'].T, dtype=np.float32)[:, ids]
        hi = np.ascontiguousarray(objects['bmax'].T, dtype=np.float32)[:, ids]
        # Box face: on each axis the distance to the nearer slab; the face hit is on the axis
        # where that distance is smallest (the hit point lies on it).
        below = [p - lo[a] for a, p in enumerate((px, py, pz))]
        above = [hi[a] - p for a, p in enumerate((px, py, pz))]
        gap = [np.abs(np.minimum(below[a], above[a])) for a in range(3)]
        axis = np.where((gap[0] <= gap[1]) & (gap[0] <= gap[2]), np.int8(0),
                        np.where(gap[1] <= gap[2], np.int8(1), np.int8(2)))
        face = axis.copy()
        for a in range(3):
            on_axis = axis == a
            face[on_axis & (above[a] < below[a])] += 3
            normal[a][objs] = np.where(on_axis, np.where(above[a] < below[a], np.float32(1.0),
                                                         np.float32(-1.0)), np.float32(0.0))
        spheres = np.flatnonzero(objects['kind'][ids] == raycast.SPHERE)
        if spheres.size:
            radius = (hi[0, spheres] - lo[0, spheres]) * 0.5
            for a, p in enumerate((px, py, pz)):
                center = (lo[a, spheres] + hi[a, spheres]) * 0.5
                normal[a][objs[spheres]] = (p[spheres] - center) / radius
        return {'material': material.reshape(shape),
                'normal': [n.reshape(shape) for n in normal], 'point': point,
                'objs': objs, 'ids': ids, 'face': face, 'lo': lo, 'hi': hi,
                'ground': ground, 'ground_material': ground_material}

    def _markings(self, x, y):
        """Lane markings on the road: dashed centre line, solid edge lines, 0.15 m wide."""
        s = self.scene
        width = 0.075
        centre = (np.abs(y) < width) & (np.mod(x, 9.0) < 3.0)
        left_edge = np.abs(y - (s.lane_width - 0.2)) < width
        right_edge = np.abs(y + (s.lane_width - 0.2)) < width
        return centre | left_edge | right_edge

    def _noise(self, a, b, scale):
        tile = self._noise_texture
        ia = (a * np.float32(1.0 / scale)).astype(np.int32) & 255
        ib = (b * np.float32(1.0 / scale)).astype(np.int32) & 255
        return tile[ia, ib]

    def _sky(self, grid) -> tuple[np.ndarray, np.ndarray]:
        """(sky image (rows*cols, 3), ray length factor) for a grid; fixed per drive."""
        key = id(grid)   # grids are kept for the drive's lifetime, so ids stay unique
        if key in self._sky_cache:
            return self._sky_cache[key]
        s = self.scene
        dirs = [d.ravel().astype(np.float64) for d in grid.dirs]
        norm = np.sqrt(dirs[0] ** 2 + dirs[1] ** 2 + dirs[2] ** 2)
        elevation = np.clip(dirs[2] / norm, -1.0, 1.0)
        blend = np.clip(elevation * 2.5, 0.0, 1.0)[:, None] ** 0.7
        sky = s.sky_horizon * (1 - blend) + s.sky_zenith * blend
        glow = np.clip((dirs[0] * s.sun[0] + dirs[1] * s.sun[1] + dirs[2] * s.sun[2]) / norm,
                       0.0, 1.0)
        sky = sky + (glow ** 8)[:, None] * 0.25
        if s.cloudiness > 0:
            # Clouds: noise on a plane 1 km up, seen through each upward ray.
            up = np.maximum(dirs[2] / norm, 0.02)
            reach = 1000.0 / up
            cloud = self._noise((dirs[0] / norm * reach).astype(np.float32),
                                (dirs[1] / norm * reach).astype(np.float32), 40.0)
            cover = np.clip((cloud - (1.0 - s.cloudiness * 0.7)) * 3.0, 0.0, 1.0)
            cover *= np.clip(elevation * 6.0, 0.0, 1.0)
            sky = sky * (1 - cover[:, None]) + np.array([0.92, 0.92, 0.94]) * cover[:, None]
        sky = sky.astype(np.float32)
        self._sky_cache[key] = (sky, norm.astype(np.float32))
        return self._sky_cache[key]

    def _shade(self, grid, origin, t, hit, surface, objects) -> np.ndarray:
        """RGB image; colours are kept planar (3, pixels), which numpy handles fastest."""
        s = self.scene
        sky, ray_norm = self._sky(grid)
        material = surface['material'].ravel()
        x, y, z = surface['point']
        albedo = np.zeros((3, material.size), dtype=np.float32)
        # Ground: asphalt grain at 4 cm plus patches at 1.5 m; markings; grass and soil.
        ground, ground_material = surface['ground'], surface['ground_material']
        gx, gy = x[ground], y[ground]
        fine = self._noise(gx, gy, 0.04)
        coarse = self._noise(gy, gx, 1.5)
        asphalt = s.asphalt * (0.75 + 0.35 * fine + 0.3 * coarse)
        mark_color = _column([0.85, 0.7, 0.2] if s.marking_yellow else [0.82, 0.82, 0.8])
        mix = np.clip((coarse - 0.35) * 3.0, 0.0, 1.0)
        terrain = (_column([0.22, 0.33, 0.1]) * (1 - mix) + _column([0.36, 0.3, 0.2]) * mix) * (
            0.7 + 0.6 * fine)
        albedo[:, ground] = np.where(
            ground_material == ROAD, asphalt,
            np.where(ground_material == MARKING, mark_color * (0.85 + 0.15 * fine), terrain))
        # Objects.
        objs, ids, face = surface['objs'], surface['ids'], surface['face']
        lo = surface['lo']
        obj_material = material[objs]
        color = np.ascontiguousarray(objects['color'].T)[:, ids]
        ox, oy, oz = x[objs], y[objs], z[objs]
        axis = face % 3
        along = np.where(axis == 0, oy, ox)           # horizontal coordinate on a face
        vertical = axis != 2
        walk = np.flatnonzero(obj_material == SIDEWALK)
        if walk.size:
            size = 0.3 + objects['param'][ids[walk], 0]
            wx, wy = ox[walk], oy[walk]
            cell_x, cell_y = np.floor(wx / size), np.floor(wy / size)
            joint = ((wx - cell_x * size) < 0.03) | ((wy - cell_y * size) < 0.03)
            slab = self._noise(cell_x * 7.3, cell_y * 3.1, 1.0)
            shade = (0.85 + 0.25 * slab) * np.where(joint, 0.7, 1.0)
            shade *= 0.9 + 0.2 * self._noise(wx, wy, 0.03)
            shade = np.where(vertical[walk], np.float32(1.1), shade)
            color[:, walk] *= shade
        building = np.flatnonzero(obj_material == BUILDING)
        if building.size:
            # Per-building values gathered from the small object table, not per pixel.
            which = ids[building]
            spacing, floor_h, frac = (np.ascontiguousarray(column, dtype=np.float32)[which]
                                      for column in objects['param'].T)
            offset = (objects['bmin'][:, 0] + objects['bmin'][:, 1]).astype(np.float32)[which]
            top = objects['bmax'][:, 2].astype(np.float32)[which]
            b_along, b_z = along[building], oz[building]
            u = (b_along - offset) / spacing
            u -= np.floor(u)
            w = b_z / floor_h
            w -= np.floor(w)
            facing = vertical[building]
            window = ((np.abs(u - 0.5) < frac * 0.5) & (w > 0.3) & (w < 0.85)
                      & (b_z > 1.2) & (b_z < top - 0.8) & facing)
            facade = color[:, building] * (0.85 + 0.3 * self._noise(b_along, b_z, 0.08))
            # Glass brightens towards the top of each pane (a cheap sky reflection).
            glass = _column([0.1, 0.13, 0.18]) * (0.7 + 1.2 * (w - 0.3))
            facade[:, ~facing] = _column([0.3, 0.28, 0.27])
            color[:, building] = np.where(window, glass, facade)
        car = np.flatnonzero(obj_material == CAR)
        if car.size:
            height = oz[car] - lo[2, car]
            dark = (height < 0.35) | ((np.abs(height - 0.5) < 0.04) & vertical[car])
            color[:, car] = np.where(dark, np.float32(0.05), color[:, car])
        glass = np.flatnonzero(obj_material == GLASS)
        if glass.size:
            top = ~vertical[glass]
            pillar = (np.mod(along[glass] - lo[0, glass], 1.2) < 0.12) & (axis[glass] == 1)
            body = top | pillar | (oz[glass] - lo[2, glass] < 0.06)
            color[:, glass] = np.where(body, color[:, glass], _column([0.1, 0.12, 0.15]))
        foliage = np.flatnonzero(obj_material == FOLIAGE)
        if foliage.size:
            fx, fy, fz = ox[foliage], oy[foliage], oz[foliage]
            color[:, foliage] *= 0.55 + 0.9 * self._noise(fx + fz * 0.7, fy - fz * 0.6, 0.12)
        person = np.flatnonzero(obj_material == PERSON)
        if person.size:
            legs = (oz[person] - lo[2, person] < 0.85) & (objects['kind'][ids[person]] == 0)
            color[:, person] = np.where(legs, _column([0.12, 0.12, 0.16]), color[:, person])
        wall = np.flatnonzero(obj_material == WALL)
        if wall.size:
            stain = self._noise(along[wall] * 0.5, oz[wall], 0.1)
            color[:, wall] *= 0.8 + 0.35 * stain * (1.2 - 0.4 * (oz[wall] - lo[2, wall]))
        fence = np.flatnonzero(obj_material == FENCE)
        if fence.size:
            gap = objects['param'][ids[fence], 0]
            slat = np.mod(along[fence], gap + 0.08) < 0.08
            color[:, fence] *= np.where(slat, np.float32(1.25), np.float32(0.55))
        bicycle = np.flatnonzero(obj_material == BICYCLE)
        if bicycle.size:
            # Two dark wheels: the box is 1.7 m long, wheels of radius 0.33 at either end.
            u = np.abs(np.abs(along[bicycle] - (lo[0, bicycle] + 0.85)) - 0.5)
            h = oz[bicycle] - lo[2, bicycle] - 0.35
            ring = np.abs(np.sqrt(u * u + h * h) - 0.3) < 0.05
            color[:, bicycle] = np.where(ring, np.float32(0.04), color[:, bicycle] * 0.6)
        trunk = np.flatnonzero(obj_material == TRUNK)
        if trunk.size:
            color[:, trunk] *= 0.7 + 0.6 * self._noise(oz[trunk], along[trunk], 0.05)
        albedo[:, objs] = color
        # Lambertian sun plus a sky ambient term, then aerial perspective (haze grows with
        # distance); sky pixels get the cached sky gradient.
        nx, ny, nz = (n.ravel() for n in surface['normal'])
        sun = s.sun.astype(np.float32)
        lambert = np.maximum(nx * sun[0] + ny * sun[1] + nz * sun[2], np.float32(0.0))
        if s.sun[2] > 0.05:
            lambert[self._ground_shadow(grid, origin, hit, surface, objects)] = 0.0
        valid = hit.ravel() >= 0
        distance = np.where(valid, t.ravel(), np.float32(0.0)) * ray_norm
        keep = np.exp(distance * np.float32(-1.0 / s.haze_distance))
        skylight = (0.8 + 0.2 * nz) * keep
        sunlight = lambert * keep
        haze = 1.0 - keep
        exposure = np.float32(s.exposure)
        planes = []
        for c in range(3):
            channel = albedo[c] * (skylight * np.float32(s.ambient[c])
                                   + sunlight * np.float32(s.sun_color[c]))
            channel += haze * np.float32(s.sky_horizon[c])
            channel = np.where(valid, channel, sky[:, c]) * exposure
            # Display gamma through a 12-bit lookup table (cheaper than a power per pixel).
            codes = np.minimum(channel * 4095.0 + 0.5, 4095.0).astype(np.uint16)
            planes.append(_GAMMA_LUT[codes].reshape(t.shape))
        image = np.stack(planes, axis=-1)
        if self.config.blur_sigma > 0:
            import cv2
            image = cv2.GaussianBlur(image, (0, 0), self.config.blur_sigma)
        return image


    def _ground_shadow(self, grid, origin, hit, surface, objects) -> np.ndarray:
        """Flat indices of ground pixels from which the sun is hidden by an object.

        An object's shadow on the ground is its box projected along the sun direction onto
        z = 0 (an affine image of the box, so the camera windows of the projected corners
        bound it). Inside that window, a ray from each ground point towards the sun is tested
        against the object.
        """
        sun = self.scene.sun
        ground = (hit == 0)
        point_x, point_y = (p.reshape(hit.shape) for p in surface['point'][:2])
        corners = raycast.box_corners(objects['bmin'], objects['bmax'])
        on_ground = corners - corners[..., 2:3] / sun[2] * sun
        windows = grid.windows((on_ground - origin) @ grid.R_world_from_sensor)
        inv = 1.0 / np.where(np.abs(sun) < 1e-9, 1e-9, sun)
        shadow = np.zeros(hit.shape, dtype=bool)
        for index, object_windows in enumerate(windows):
            lo, hi = objects['bmin'][index], objects['bmax'][index]
            sphere = objects['kind'][index] == raycast.SPHERE
            for rows, cols in object_windows:
                mask = ground[rows, cols]
                if not mask.any():
                    continue
                px, py = point_x[rows, cols], point_y[rows, cols]
                if sphere:
                    center = (lo + hi) * 0.5
                    radius = (hi[0] - lo[0]) * 0.5
                    cx, cy, cz = center[0] - px, center[1] - py, center[2]
                    along = cx * sun[0] + cy * sun[1] + cz * sun[2]
                    blocked = (along > 0) & (cx * cx + cy * cy + cz * cz - along * along
                                             <= radius * radius)
                else:
                    ax, bx = (lo[0] - px) * inv[0], (hi[0] - px) * inv[0]
                    ay, by = (lo[1] - py) * inv[1], (hi[1] - py) * inv[1]
                    az, bz = lo[2] * inv[2], hi[2] * inv[2]     # ground points have z = 0
                    near = np.maximum(np.maximum(np.minimum(ax, bx), np.minimum(ay, by)),
                                      min(az, bz))
                    far = np.minimum(np.minimum(np.maximum(ax, bx), np.maximum(ay, by)),
                                     max(az, bz))
                    blocked = (near <= far) & (far > 0)
                shadow[rows, cols] |= blocked & mask
        return shadow.ravel()


def _column(rgb) -> np.ndarray:
    """An RGB triple as a (3, 1) float32 column, to broadcast against planar colours."""
    return np.asarray(rgb, dtype=np.float32).reshape(3, 1)


_GAMMA_LUT = (np.linspace(0.0, 1.0, 4096) ** (1.0 / 1.8) * 255.0 + 0.5).astype(np.uint8)
