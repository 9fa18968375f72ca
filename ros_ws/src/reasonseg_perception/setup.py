from setuptools import setup

package_name = "reasonseg_perception"

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    description="ROS 2 nodes for language-guided segmentation (reasonseg)",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "reasonseg_node = reasonseg_perception.node_main:main",
            "reasonseg_replay = reasonseg_perception.replay:main",
            "reasonseg_demo = reasonseg_perception.demo:main",
            "reasonseg_launch = reasonseg_perception.launch_runner:main",
            "reasonseg_sample_drive = reasonseg_perception.sample_drive:main",
        ],
    },
)
