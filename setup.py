"""ament_python packaging for monodepth_ros (also installable with pip off ROS)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'monodepth_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, PACKAGE + '.*']),
    package_data={PACKAGE: ['models/*.pt', 'models/*.json']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml') + glob('config/*.rviz')),
        ('share/' + PACKAGE + '/training/configs', glob('training/configs/*.yaml')),
    ],
    # Runtime libraries come from the platform (rosdep keys in package.xml, JetPack's torch
    # and TensorRT); the pinned off-ROS environment is requirements.txt.
    install_requires=['setuptools'],
    # eval-fleet / infer-fleet on Ray: pip install monodepth_ros[fleet]
    extras_require={'fleet': ['ray==2.58.0']},
    zip_safe=True,
    maintainer='monodepth_ros developers',
    maintainer_email='monodepth-ros@example.com',
    description='Monocular metric depth estimation for ROS 2: train, export, run, evaluate.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'monodepth = monodepth_ros.cli:main',
            'depth_node = monodepth_ros.ros.node:main',
        ],
    },
)
