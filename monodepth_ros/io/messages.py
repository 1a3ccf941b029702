"""numpy <-> ROS message conversion without ROS.

Message classes are passed in through a :class:`MessageTypes` bundle, so the same builders fill
rclpy messages on a robot and ``rosbags`` typestore messages offline. Readers only use
attribute access, so they accept either kind (and ROS 1 messages read from bags).

Conventions
-----------
* ``image_to_array`` returns a read-only zero-copy view of the message data whenever the
  encoding's byte order matches the host; copy it before modifying.
* Depth images follow REP 118: ``32FC1`` in metres, ``16UC1`` in millimetres. Decoding maps
  NaN, +-Inf, zero and negative values to NaN (invalid); builders write NaN (32FC1) or 0 (16UC1)
  for invalid pixels.
* ``8UC3`` is taken as BGR, like OpenCV and cv_bridge.
* ``read_pointcloud2`` returns flat arrays of ``height * width`` points in the field's own
  dtype (native byte order), organized clouds row by row.
* Every malformed message raises :class:`MessageError` saying what was wrong and what was
  expected; so does an image over :data:`MAX_IMAGE_PIXELS` (read from the header, before any
  pixel is decoded) and a PointCloud2 whose fields overlap or do not fit in ``point_step``.
"""

from __future__ import annotations

import array as pyarray
import sys
from functools import lru_cache

import numpy as np

from monodepth_ros.errors import BagError, MessageError
from monodepth_ros.io.camera import CameraModel, RegionOfInterest
from monodepth_ros.io.geometry import matrix_to_quaternion

# Short class name -> ROS 2 message type name.
MESSAGE_NAMES = {
    'Image': 'sensor_msgs/msg/Image',
    'CompressedImage': 'sensor_msgs/msg/CompressedImage',
    'CameraInfo': 'sensor_msgs/msg/CameraInfo',
    'RegionOfInterest': 'sensor_msgs/msg/RegionOfInterest',
    'PointCloud2': 'sensor_msgs/msg/PointCloud2',
    'PointField': 'sensor_msgs/msg/PointField',
    'Imu': 'sensor_msgs/msg/Imu',
    'NavSatFix': 'sensor_msgs/msg/NavSatFix',
    'NavSatStatus': 'sensor_msgs/msg/NavSatStatus',
    'Header': 'std_msgs/msg/Header',
    'Time': 'builtin_interfaces/msg/Time',
    'TFMessage': 'tf2_msgs/msg/TFMessage',
    'TransformStamped': 'geometry_msgs/msg/TransformStamped',
    'Transform': 'geometry_msgs/msg/Transform',
    'Vector3': 'geometry_msgs/msg/Vector3',
    'Quaternion': 'geometry_msgs/msg/Quaternion',
    'DiagnosticArray': 'diagnostic_msgs/msg/DiagnosticArray',
    'DiagnosticStatus': 'diagnostic_msgs/msg/DiagnosticStatus',
    'KeyValue': 'diagnostic_msgs/msg/KeyValue',
}

ROSBAGS_DISTROS = ('humble', 'jazzy')


def check_topic_type(topic: str, msgtype: str, expected: str, bag) -> None:
    """BagError unless ``msgtype`` (a bag's type name, ROS 2 or ROS 1 form) is ``expected``.

    ``expected`` is a short name of :data:`MESSAGE_NAMES` ('CameraInfo', 'PointCloud2'...).
    """
    full = MESSAGE_NAMES[expected]
    if msgtype not in (full, full.replace('/msg/', '/')):
        raise BagError(f'topic {topic} in {bag} carries {msgtype}, expected {full}')


class MessageTypes:
    """Message classes of one backend plus the array conversions its fields need.

    rosbags dataclasses want numpy arrays for numeric sequences and ints for ``byte``; rclpy
    messages want ``array.array`` for unbounded sequences and ``bytes`` for ``byte``. Builders
    go through :meth:`uint8_array`, :meth:`float64_array` and :meth:`byte` so the same code
    fills both.
    """

    Image: type
    CompressedImage: type
    CameraInfo: type
    RegionOfInterest: type
    PointCloud2: type
    PointField: type
    Imu: type
    NavSatFix: type
    NavSatStatus: type
    Header: type
    Time: type
    TFMessage: type
    TransformStamped: type
    Transform: type
    Vector3: type
    Quaternion: type
    DiagnosticArray: type
    DiagnosticStatus: type
    KeyValue: type

    def __init__(self, classes: dict[str, type], backend: str, typestore=None, distro=''):
        missing = sorted(set(MESSAGE_NAMES) - set(classes))
        if missing:
            raise MessageError(f'message classes missing from the bundle: {missing}')
        if backend not in ('rosbags', 'rclpy'):
            raise MessageError(f'unknown message backend {backend!r}, expected rosbags|rclpy')
        for name, cls in classes.items():
            setattr(self, name, cls)
        self.backend = backend
        self.typestore = typestore
        self.distro = distro

    def __repr__(self) -> str:
        return f'MessageTypes(backend={self.backend!r}, distro={self.distro!r})'

    @classmethod
    def rosbags(cls, distro: str = 'humble') -> MessageTypes:
        """Classes of the rosbags typestore for ROS 2 ``distro`` ('humble' or 'jazzy')."""
        return _rosbags_types(distro)

    @classmethod
    def rclpy(cls) -> MessageTypes:
        """Classes of the installed ROS 2 Python message packages (needs a sourced ROS 2)."""
        import builtin_interfaces.msg as builtin_msgs
        import diagnostic_msgs.msg as diagnostic_msgs
        import geometry_msgs.msg as geometry_msgs
        import sensor_msgs.msg as sensor_msgs
        import std_msgs.msg as std_msgs
        import tf2_msgs.msg as tf2_msgs

        modules = {'sensor_msgs': sensor_msgs, 'std_msgs': std_msgs,
                   'builtin_interfaces': builtin_msgs, 'tf2_msgs': tf2_msgs,
                   'geometry_msgs': geometry_msgs, 'diagnostic_msgs': diagnostic_msgs}
        classes = {name: getattr(modules[full.split('/')[0]], name)
                   for name, full in MESSAGE_NAMES.items()}
        return cls(classes, 'rclpy')

    # -- field converters ---------------------------------------------------------------
    def uint8_array(self, data):
        """A ``uint8[]`` field value from a bytes-like object or contiguous array."""
        if self.backend == 'rosbags':
            return np.frombuffer(data, dtype=np.uint8)
        out = pyarray.array('B')
        out.frombytes(data)
        return out

    def float64_array(self, values, size: int | None = None):
        """A ``float64[]`` (``size=None``) or ``float64[size]`` field value."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if size is not None and values.size != size:
            raise MessageError(f'float64[{size}] field given {values.size} values')
        if self.backend == 'rclpy' and size is None:
            return pyarray.array('d', values.tobytes())
        return values.copy()

    def byte(self, value: int):
        """A ``byte`` field value (rclpy wants bytes, rosbags an int)."""
        if self.backend == 'rclpy':
            return bytes([int(value)])
        return int(value)

    @staticmethod
    def msgtype(msg) -> str:
        """ROS 2 type name of a message instance, e.g. 'sensor_msgs/msg/Image'."""
        name = getattr(msg, '__msgtype__', None)
        if name:
            return name
        module = type(msg).__module__.split('.')[0]
        return f'{module}/msg/{type(msg).__name__}'


@lru_cache(maxsize=None)
def _rosbags_types(distro: str) -> MessageTypes:
    from rosbags.typesys import Stores, get_typestore

    stores = {'humble': Stores.ROS2_HUMBLE, 'jazzy': Stores.ROS2_JAZZY}
    if distro not in stores:
        raise MessageError(f'unknown ROS 2 distro {distro!r}, expected one of {ROSBAGS_DISTROS}')
    typestore = get_typestore(stores[distro])
    classes = {name: typestore.types[full] for name, full in MESSAGE_NAMES.items()}
    return MessageTypes(classes, 'rosbags', typestore=typestore, distro=distro)


# -- headers ------------------------------------------------------------------------------
def stamp_to_ns(stamp) -> int:
    """Nanoseconds since the epoch of a builtin_interfaces/Time (ROS 1 secs/nsecs too)."""
    sec = getattr(stamp, 'sec', None)
    if sec is None:
        sec = getattr(stamp, 'secs', 0)
    nanosec = getattr(stamp, 'nanosec', None)
    if nanosec is None:
        nanosec = getattr(stamp, 'nsecs', 0)
    return int(sec) * 1_000_000_000 + int(nanosec)


def make_time(types: MessageTypes, stamp_ns: int):
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return types.Time(sec=sec, nanosec=nanosec)


def make_header(types: MessageTypes, stamp_ns: int, frame_id: str):
    return types.Header(stamp=make_time(types, stamp_ns), frame_id=str(frame_id))


def _as_uint8_buffer(data, what: str) -> np.ndarray:
    """Flat uint8 view of a message's data field (ndarray, array.array, bytes or list).

    The field is ``uint8[]``: an array of another dtype is refused rather than cast, since
    casting (say float32 pixels) would silently produce unrelated bytes.
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise MessageError(f'{what} data is an array of {data.dtype}, expected uint8 '
                               'bytes')
        return data.reshape(-1)
    if isinstance(data, pyarray.array) and data.typecode != 'B':
        raise MessageError(f'{what} data is an array.array of typecode {data.typecode!r}, '
                           "expected uint8 bytes (typecode 'B')")
    if isinstance(data, (bytes, bytearray, memoryview, pyarray.array)):
        return np.frombuffer(data, dtype=np.uint8)
    try:
        values = np.asarray(data)
    except (TypeError, ValueError) as err:
        raise MessageError(f'{what} data of type {type(data).__name__} is not a byte buffer') \
            from err
    if values.size == 0:
        return np.empty(0, dtype=np.uint8)
    if values.dtype.kind not in 'iu' or values.min() < 0 or values.max() > 255:
        raise MessageError(f'{what} data of type {type(data).__name__} holds {values.dtype} '
                           'values, expected uint8 bytes (integers 0..255)')
    return values.astype(np.uint8).reshape(-1)


# -- images -------------------------------------------------------------------------------
# encoding -> (dtype, channels)
_NAMED_ENCODINGS = {
    'rgb8': ('u1', 3), 'bgr8': ('u1', 3), 'rgba8': ('u1', 4), 'bgra8': ('u1', 4),
    'rgb16': ('u2', 3), 'bgr16': ('u2', 3), 'rgba16': ('u2', 4), 'bgra16': ('u2', 4),
    'mono8': ('u1', 1), 'mono16': ('u2', 1),
    'bayer_rggb8': ('u1', 1), 'bayer_bggr8': ('u1', 1),
    'bayer_gbrg8': ('u1', 1), 'bayer_grbg8': ('u1', 1),
    'bayer_rggb16': ('u2', 1), 'bayer_bggr16': ('u2', 1),
    'bayer_gbrg16': ('u2', 1), 'bayer_grbg16': ('u2', 1),
}
_CV_DEPTHS = {'8U': 'u1', '8S': 'i1', '16U': 'u2', '16S': 'i2', '32S': 'i4', '32F': 'f4',
              '64F': 'f8'}

# ROS Bayer name -> OpenCV code. OpenCV names a pattern by the 2x2 block starting at the
# second row/column, hence the apparent swap (same table as cv_bridge).
_BAYER_TO_RGB = {
    'rggb': 'COLOR_BayerBG2RGB', 'bggr': 'COLOR_BayerRG2RGB',
    'gbrg': 'COLOR_BayerGR2RGB', 'grbg': 'COLOR_BayerGB2RGB',
}


# The largest image decoded: 50 megapixels (8K video is 33). A bigger one is refused from its
# header (Image width*height, PNG IHDR, JPEG SOF) before any pixel is decoded, so one hostile
# frame cannot cost gigabytes of memory.
MAX_IMAGE_PIXELS = 50_000_000


def check_image_size(width: int, height: int, what: str) -> None:
    """Refuse an empty image or one over :data:`MAX_IMAGE_PIXELS`, with a one-line error."""
    if width <= 0 or height <= 0:
        raise MessageError(f'{what} is {width}x{height}, expected a non-empty image')
    if width * height > MAX_IMAGE_PIXELS:
        raise MessageError(f'{what} is {width}x{height} = {width * height:,} pixels, over the '
                           f'limit of {MAX_IMAGE_PIXELS:,}; expected a smaller image')


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# JPEG start-of-frame markers (baseline, progressive, lossless...; not DHT C4, JPG C8, DAC CC).
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_image_size(data) -> tuple[int, int]:
    """(width, height) from a PNG IHDR or JPEG SOF header (bytes-like), decoding no pixel."""
    if data[:8] == _PNG_SIGNATURE:
        if len(data) < 24 or data[12:16] != b'IHDR':
            raise MessageError('CompressedImage PNG has no IHDR header; expected a png file')
        return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')
    if data[:2] == b'\xff\xd8':
        position = 2
        while position + 4 <= len(data):
            if data[position] != 0xFF:
                break
            marker = data[position + 1]
            if marker == 0xFF:              # fill byte before a marker
                position += 1
                continue
            if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:   # markers without length
                position += 2
                continue
            length = int.from_bytes(data[position + 2:position + 4], 'big')
            if marker in _JPEG_SOF_MARKERS and position + 9 <= len(data):
                height = int.from_bytes(data[position + 5:position + 7], 'big')
                width = int.from_bytes(data[position + 7:position + 9], 'big')
                return width, height
            if length < 2 or marker in (0xD9, 0xDA):   # end of image, or scan data
                break
            position += 2 + length
        raise MessageError('CompressedImage JPEG has no frame header (SOF) before its image '
                           'data; expected a jpeg file')
    raise MessageError(f'CompressedImage data could not be decoded: it starts with '
                       f'{bytes(data[:8])!r}, expected a png or jpeg header')


def encoding_format(encoding: str) -> tuple[np.dtype, int]:
    """(dtype, channels) of an image encoding; MessageError for unknown ones."""
    if encoding in _NAMED_ENCODINGS:
        kind, channels = _NAMED_ENCODINGS[encoding]
        return np.dtype(kind), channels
    # OpenCV style: 8UC3, 32FC1, 16SC1...
    if 'C' in encoding:
        depth, _, channels = encoding.partition('C')
        if depth in _CV_DEPTHS and channels.isdigit() and 1 <= int(channels) <= 4:
            return np.dtype(_CV_DEPTHS[depth]), int(channels)
    supported = sorted(_NAMED_ENCODINGS) + ['8UC1..4', '16UC1..4', '32FC1..4', '...']
    raise MessageError(f'unsupported image encoding {encoding!r}; supported: {supported}')


def image_to_array(msg) -> np.ndarray:
    """Pixels of a sensor_msgs/Image as HxW (one channel) or HxWxC, native byte order.

    Honours ``step`` (padded rows) and ``is_bigendian``. Returns a read-only view of the
    message data when no byte swap is needed.
    """
    dtype, channels = encoding_format(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_image_size(width, height, 'image')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise MessageError(
            f'image step {step} is smaller than width*pixel size = {width}*'
            f'{channels * dtype.itemsize} = {row_bytes} for encoding {msg.encoding}')
    data = _as_uint8_buffer(msg.data, 'image')
    needed = (height - 1) * step + row_bytes
    if data.size < needed:
        raise MessageError(
            f'image data has {data.size} bytes, expected height*step = {height}*{step} = '
            f'{height * step} for a {width}x{height} {msg.encoding} image')
    wire = dtype.newbyteorder('>' if msg.is_bigendian else '<')
    pixels = np.ndarray((height, width, channels), dtype=wire, buffer=data,
                        strides=(step, channels * dtype.itemsize, dtype.itemsize))
    if not wire.isnative:
        pixels = pixels.astype(wire.newbyteorder('='))
    else:
        pixels.flags.writeable = False
    return pixels[:, :, 0] if channels == 1 else pixels


def image_to_rgb(msg) -> np.ndarray:
    """HxWx3 uint8 RGB from any colour, mono or Bayer encoding (16-bit scaled down).

    For rgb8/rgba8 this is a read-only view of the message data; copy it to modify it.
    """
    import cv2

    encoding = msg.encoding
    pixels = image_to_array(msg)
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise MessageError(
            f'image encoding {encoding!r} is not a colour/mono 8- or 16-bit encoding; '
            'expected rgb8, bgr8, rgba8, bgra8, mono8, mono16, 8UC1/3/4 or bayer_*')
    if encoding.startswith('bayer_'):
        code = getattr(cv2, _BAYER_TO_RGB[encoding[6:10]])
        return cv2.cvtColor(np.ascontiguousarray(pixels), code)
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        return np.repeat(pixels.reshape(pixels.shape[0], pixels.shape[1], 1), 3, axis=2)
    if encoding.startswith('rgb'):
        return pixels[:, :, :3]
    if pixels.shape[2] == 2:
        raise MessageError(f'image encoding {encoding!r} has 2 channels, expected 1, 3 or 4')
    # bgr8, bgra8, 8UC3, 8UC4: OpenCV channel order.
    return np.ascontiguousarray(pixels[:, :, 2::-1])


def depth_image_to_metres(msg) -> np.ndarray:
    """HxW float32 metres from a 32FC1/64FC1 (metres) or 16UC1/mono16 (mm) depth image.

    NaN, +-Inf, zero and negative depths become NaN (REP 118: NaN is invalid).
    """
    if msg.encoding not in ('32FC1', '64FC1', '16UC1', 'mono16'):
        raise MessageError(
            f'depth image encoding {msg.encoding!r} is not supported; expected 32FC1 '
            '(metres), 64FC1 (metres) or 16UC1/mono16 (millimetres)')
    pixels = image_to_array(msg)
    if pixels.dtype == np.uint16:
        depth = pixels.astype(np.float32) * np.float32(0.001)
    else:
        depth = pixels.astype(np.float32)  # always a copy: we write into it below
    with np.errstate(invalid='ignore'):
        depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


def compressed_image_to_rgb(msg) -> np.ndarray:
    """HxWx3 uint8 RGB from a jpeg or png sensor_msgs/CompressedImage."""
    import cv2

    fmt = str(msg.format).lower()
    if 'compresseddepth' in fmt:
        raise MessageError(
            f'CompressedImage format {msg.format!r} is a compressed depth image; expected '
            'jpeg or png colour/mono image')
    if fmt and 'jpeg' not in fmt and 'jpg' not in fmt and 'png' not in fmt:
        raise MessageError(f'CompressedImage format {msg.format!r} unsupported, expected '
                           'jpeg or png')
    data = _as_uint8_buffer(msg.data, 'CompressedImage')
    if data.size == 0:
        raise MessageError('CompressedImage has no data, expected jpeg or png bytes')
    width, height = compressed_image_size(memoryview(np.ascontiguousarray(data)))
    check_image_size(width, height, 'CompressedImage')
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise MessageError(
            f'CompressedImage data ({data.size} bytes, format {msg.format!r}) could not be '
            'decoded as jpeg or png')
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def array_to_image(types: MessageTypes, array: np.ndarray, encoding: str, header):
    """A sensor_msgs/Image holding ``array`` (HxW or HxWxC) in ``encoding``.

    The array dtype must match the encoding (uint8 for rgb8, float32 for 32FC1...). Data are
    written little-endian with ``step = width * pixel size``.
    """
    dtype, channels = encoding_format(encoding)
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != channels:
        expected = 'HxW' if channels == 1 else f'HxWx{channels}'
        raise MessageError(f'array of shape {array.shape} does not fit encoding '
                           f'{encoding!r}; expected {expected}')
    if array.dtype != dtype:
        raise MessageError(
            f'array dtype {array.dtype} does not fit encoding {encoding!r}, expected {dtype}')
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise MessageError(f'array of shape {array.shape} is empty, expected a non-empty image')
    little = np.ascontiguousarray(array, dtype=dtype.newbyteorder('<'))
    return types.Image(
        header=header, height=int(height), width=int(width), encoding=encoding,
        is_bigendian=0, step=int(width * channels * dtype.itemsize),
        data=types.uint8_array(little.reshape(-1).view(np.uint8)))


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """Metres (NaN/Inf/<=0 invalid) -> uint16 millimetres (0 invalid, saturating at 65.535 m)."""
    depth = np.asarray(depth_m, dtype=np.float32)
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(depth) & (depth > 0)
    millimetres = np.where(valid, np.rint(np.where(valid, depth, 0) * 1000.0), 0.0)
    return np.clip(millimetres, 0, 65535).astype(np.uint16)


def depth_to_image(types: MessageTypes, depth_m: np.ndarray, header, encoding='32FC1'):
    """A depth image from HxW metres: 32FC1 (NaN invalid) or 16UC1 millimetres (0 invalid)."""
    depth = np.asarray(depth_m, dtype=np.float32)
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(depth) & (depth > 0)
    if encoding == '32FC1':
        return array_to_image(types, np.where(valid, depth, np.float32(np.nan)), encoding,
                              header)
    if encoding == '16UC1':
        return array_to_image(types, depth_to_millimetres(depth), encoding, header)
    raise MessageError(f'depth encoding {encoding!r} unsupported, expected 32FC1 or 16UC1')


# -- camera info --------------------------------------------------------------------------
def _field(msg, lower: str):
    """CameraInfo matrix field: ROS 2 lower case (k, d, r, p) or ROS 1 upper case."""
    value = getattr(msg, lower, None)
    return getattr(msg, lower.upper()) if value is None else value


def camera_info_to_model(msg) -> CameraModel:
    """Camera model of the image published with this CameraInfo (ROI and binning applied)."""
    roi = msg.roi
    model = CameraModel(
        width=int(msg.width), height=int(msg.height),
        K=np.asarray(_field(msg, 'k'), dtype=np.float64),
        P=np.asarray(_field(msg, 'p'), dtype=np.float64),
        D=np.asarray(_field(msg, 'd'), dtype=np.float64),
        R=np.asarray(_field(msg, 'r'), dtype=np.float64),
        distortion_model=str(msg.distortion_model),
        binning_x=int(msg.binning_x), binning_y=int(msg.binning_y),
        roi=RegionOfInterest(x_offset=int(roi.x_offset), y_offset=int(roi.y_offset),
                             height=int(roi.height), width=int(roi.width),
                             do_rectify=bool(roi.do_rectify)))
    return model.effective()


def model_to_camera_info(types: MessageTypes, camera: CameraModel, header):
    """A sensor_msgs/CameraInfo carrying every field of ``camera``."""
    roi = camera.roi
    return types.CameraInfo(
        header=header, height=camera.height, width=camera.width,
        distortion_model=camera.distortion_model,
        d=types.float64_array(camera.D), k=types.float64_array(camera.K, 9),
        r=types.float64_array(camera.R, 9), p=types.float64_array(camera.P, 12),
        binning_x=int(camera.binning_x), binning_y=int(camera.binning_y),
        roi=types.RegionOfInterest(x_offset=int(roi.x_offset), y_offset=int(roi.y_offset),
                                   height=int(roi.height), width=int(roi.width),
                                   do_rectify=bool(roi.do_rectify)))


# -- point clouds -------------------------------------------------------------------------
# PointField datatype -> numpy kind
POINT_FIELD_DTYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}
FLOAT32 = 7
_FIELD_DATATYPES = {kind: datatype for datatype, kind in POINT_FIELD_DTYPES.items()}


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Nx3 (or ...x3) uint8 RGB -> float32 holding uint32 0x00RRGGBB (PCL/RViz packing)."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) \
        | rgb[..., 2].astype(np.uint32)
    return packed.view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: float32 packed rgb -> ...x3 uint8."""
    value = np.ascontiguousarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF],
                    axis=-1).astype(np.uint8)


def make_pointcloud2(types: MessageTypes, header, xyz: np.ndarray, rgb: np.ndarray | None = None,
                     fields: dict[str, np.ndarray] | None = None,
                     field_dtypes: dict[str, object] | None = None):
    """A PointCloud2 of float32 x, y, z [, rgb packed as float32] [, extra fields].

    ``xyz`` HxWx3 gives an organized cloud (height = H), Nx3 an unorganized one (height = 1).
    NaN marks invalid points, so ``is_dense`` is False. ``rgb`` has the same leading shape as
    ``xyz`` (uint8); each ``fields`` value has that leading shape too (one value per point)
    and is stored as float32, or as the type ``field_dtypes`` gives for its name (an integer
    PointField type: int8/uint8/int16/uint16/int32/uint32, e.g. ``{'ring': np.uint16}``).
    Every field starts on a 4-byte boundary (a 1- or 2-byte field is followed by padding), so
    x, y, z, intensity and a uint16 ring lie at offsets 0, 4, 8, 12, 16 as in the Velodyne
    driver's clouds. Data are in the host byte order (little-endian in practice).
    """
    import cv2

    xyz = np.asarray(xyz)
    if xyz.ndim not in (2, 3) or xyz.shape[-1] != 3:
        raise MessageError(f'xyz has shape {xyz.shape}, expected HxWx3 or Nx3')
    lead = xyz.shape[:-1]
    height, width = (lead[0], lead[1]) if xyz.ndim == 3 else (1, lead[0])
    names = ['x', 'y', 'z']
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != xyz.shape:
            raise MessageError(f'rgb has shape {rgb.shape}, expected {xyz.shape} like xyz')
        names.append('rgb')
    extras = dict(fields or {})
    for name, values in extras.items():
        if name in names:
            raise MessageError(f'point field {name!r} given twice')
        if np.shape(values) != lead:
            raise MessageError(
                f'point field {name!r} has shape {np.shape(values)}, expected {lead}')
        names.append(name)
    extra_dtypes = {name: np.dtype(np.float32) for name in extras}
    for name, dtype in (field_dtypes or {}).items():
        if name not in extras:
            raise MessageError(f'field_dtypes names {name!r}, which is not among the fields '
                               f'{sorted(extras)}')
        dtype = np.dtype(dtype)
        if dtype.str[1:] not in _FIELD_DATATYPES or dtype.itemsize > 4:
            raise MessageError(f'point field {name!r} cannot be stored as {dtype}; expected '
                               'float32, int8, uint8, int16, uint16, int32 or uint32')
        extra_dtypes[name] = dtype.newbyteorder('=')
    count = len(names)
    point_step = 4 * count
    # Every source as a rows x cols x channels float32 image; cv2.mixChannels then
    # interleaves them into one buffer in a single pass (about 3x faster than numpy's
    # strided column writes). The message data is a view of that buffer.
    grid = (height, width)
    sources = [np.ascontiguousarray(xyz, dtype=np.float32).reshape(grid + (3,))]
    big_endian = sys.byteorder == 'big'  # data are written in the host's byte order
    if rgb is not None:
        # Bytes of uint32 0x00RRGGBB: B, G, R, 0 little-endian; 0, R, G, B big-endian.
        packed = np.zeros(grid + (4,), dtype=np.uint8)
        rgb8 = np.ascontiguousarray(rgb, dtype=np.uint8).reshape(grid + (3,))
        if height * width:
            order = [0, 1, 1, 2, 2, 3] if big_endian else [2, 0, 1, 1, 0, 2]
            cv2.mixChannels([rgb8], [packed], order)
        sources.append(packed.view(np.float32))
    for name, values in extras.items():
        dtype = extra_dtypes[name]
        if dtype == np.float32:
            sources.append(np.ascontiguousarray(values, dtype=np.float32).reshape(grid + (1,)))
            continue
        # The value's own bytes at the start of its 4-byte slot, the rest zero padding;
        # mixChannels copies the slot as 32 raw bits.
        slot = np.zeros(grid + (4,), dtype=np.uint8)
        slot[..., :dtype.itemsize] = np.ascontiguousarray(values, dtype=dtype).reshape(
            grid + (1,)).view(np.uint8)
        sources.append(slot.view(np.float32))
    points = np.empty(grid + (count,), dtype=np.float32)
    if height * width:
        cv2.mixChannels(sources, [points], [index for channel in range(count)
                                            for index in (channel, channel)])
    point_fields = [types.PointField(
        name=name, offset=4 * i, count=1,
        datatype=_FIELD_DATATYPES[extra_dtypes[name].str[1:]] if name in extra_dtypes
        else FLOAT32) for i, name in enumerate(names)]
    return types.PointCloud2(
        header=header, height=int(height), width=int(width), fields=point_fields,
        is_bigendian=big_endian, point_step=point_step, row_step=point_step * int(width),
        data=types.uint8_array(points.reshape(-1).view(np.uint8)), is_dense=False)


def pointcloud2_fields(msg) -> dict[str, tuple[int, np.dtype, int]]:
    """Field name -> (offset, dtype in the message byte order, count) of a PointCloud2."""
    order = '>' if msg.is_bigendian else '<'
    layout = {}
    for field in msg.fields:
        kind = POINT_FIELD_DTYPES.get(int(field.datatype))
        if kind is None:
            raise MessageError(
                f'PointCloud2 field {field.name!r} has datatype {field.datatype}, expected '
                '1..8 (INT8..FLOAT64)')
        layout[field.name] = (int(field.offset), np.dtype(order + kind), int(field.count))
    _check_field_extents(layout, int(msg.point_step))
    return layout


def _check_field_extents(layout: dict[str, tuple[int, np.dtype, int]], point_step: int) -> None:
    """Refuse fields that overlap or stick out of ``point_step``: they would read garbage."""
    extents = sorted((offset, offset + dtype.itemsize * max(count, 1), name)
                     for name, (offset, dtype, count) in layout.items())
    for start, end, name in extents:
        if start < 0 or (point_step > 0 and end > point_step):
            raise MessageError(
                f'PointCloud2 field {name!r} spans bytes {start}..{end - 1}, which does not fit '
                f'in point_step {point_step}; expected every field inside one point')
    for (start, end, name), (next_start, next_end, next_name) in zip(extents, extents[1:]):
        if next_start < end:
            raise MessageError(
                f'PointCloud2 fields {name!r} (bytes {start}..{end - 1}) and {next_name!r} '
                f'(bytes {next_start}..{next_end - 1}) overlap; expected separate fields')


def read_pointcloud2(msg, names=('x', 'y', 'z')) -> dict[str, np.ndarray]:
    """Arrays of the named fields, offsets and types read from ``msg.fields``.

    Works for any layout drivers publish (padding, mixed types, either endianness). Each array
    is flat (``height * width`` points, row by row) in the field's dtype, native byte order.
    For a field with ``count > 1`` the first element is read.
    """
    layout = pointcloud2_fields(msg)
    missing = [name for name in names if name not in layout]
    if missing:
        raise MessageError(
            f'PointCloud2 lacks field(s) {missing}; it has {sorted(layout)}')
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    data = _as_uint8_buffer(msg.data, 'PointCloud2')
    if height * width == 0:
        return {name: np.empty(0, dtype=layout[name][1].newbyteorder('='))
                for name in names}
    if height < 0 or width < 0:
        raise MessageError(f'PointCloud2 size {width}x{height} is negative')
    if point_step <= 0:
        raise MessageError(f'PointCloud2 point_step is {point_step}, expected > 0')
    if row_step < width * point_step:
        raise MessageError(
            f'PointCloud2 row_step {row_step} is smaller than width*point_step = '
            f'{width}*{point_step} = {width * point_step}')
    needed = (height - 1) * row_step + width * point_step
    if data.size < needed:
        raise MessageError(
            f'PointCloud2 data has {data.size} bytes, expected height*row_step = '
            f'{height}*{row_step} = {height * row_step}')
    arrays = {}
    for name in names:
        offset, dtype, _ = layout[name]
        view = np.ndarray((height, width), dtype=dtype, buffer=data, offset=offset,
                          strides=(row_step, point_step))
        arrays[name] = view.astype(dtype.newbyteorder('=')).reshape(-1)
    return arrays


def pointcloud2_to_xyz(msg, drop_invalid: bool = True) -> np.ndarray:
    """Nx3 float32 points; with ``drop_invalid`` points with a non-finite coordinate go."""
    arrays = read_pointcloud2(msg, ('x', 'y', 'z'))
    xyz = np.stack([arrays['x'], arrays['y'], arrays['z']], axis=1).astype(np.float32)
    if drop_invalid:
        xyz = xyz[np.isfinite(xyz).all(axis=1)]
    return xyz


# -- transforms and diagnostics -----------------------------------------------------------
def make_transform_stamped(types: MessageTypes, parent: str, child: str, T: np.ndarray,
                           stamp_ns: int):
    """A geometry_msgs/TransformStamped whose 4x4 ``T`` maps child-frame points to parent."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise MessageError(f'transform {parent} <- {child} must be a finite 4x4 matrix, got '
                           f'shape {T.shape}')
    x, y, z, w = matrix_to_quaternion(T[:3, :3])
    return types.TransformStamped(
        header=make_header(types, stamp_ns, parent), child_frame_id=str(child),
        transform=types.Transform(
            translation=types.Vector3(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
            rotation=types.Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))))


def make_tf_message(types: MessageTypes, transforms):
    """A tf2_msgs/TFMessage from (parent, child, T 4x4 child->parent, stamp_ns) tuples."""
    return types.TFMessage(transforms=[
        make_transform_stamped(types, parent, child, T, stamp_ns)
        for parent, child, T, stamp_ns in transforms])


DIAGNOSTIC_LEVELS = {'OK': 0, 'WARN': 1, 'ERROR': 2, 'STALE': 3}


def make_diagnostic_array(types: MessageTypes, stamp_ns: int, statuses):
    """A diagnostic_msgs/DiagnosticArray from (level, name, message, hardware_id, values).

    ``level`` is 0..3 or 'OK'|'WARN'|'ERROR'|'STALE'; ``values`` a dict whose items become
    KeyValue pairs (values formatted with ``str``).
    """
    status_msgs = []
    for level, name, message, hardware_id, values in statuses:
        if isinstance(level, str):
            if level.upper() not in DIAGNOSTIC_LEVELS:
                raise MessageError(f'diagnostic level {level!r} unknown, expected '
                                   f'{list(DIAGNOSTIC_LEVELS)}')
            level = DIAGNOSTIC_LEVELS[level.upper()]
        if int(level) not in DIAGNOSTIC_LEVELS.values():
            raise MessageError(f'diagnostic level {level} unknown, expected 0..3')
        status_msgs.append(types.DiagnosticStatus(
            level=types.byte(level), name=str(name), message=str(message),
            hardware_id=str(hardware_id),
            values=[types.KeyValue(key=str(key), value=str(value))
                    for key, value in (values or {}).items()]))
    return types.DiagnosticArray(header=make_header(types, stamp_ns, ''), status=status_msgs)
