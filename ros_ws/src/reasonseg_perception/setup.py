from setuptools import setup

package_name = "reasonseg_perception"

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/schema", ["schema/reasonseg_node.schema.json"]),  # the params files' schema
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    description="ROS 2 nodes for language-guided segmentation (reasonseg)",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # every command through reasonseg_perception/entry.py: a signal at any moment, imports included, is a clean stop
            "reasonseg_node = reasonseg_perception.entry:node",
            "reasonseg_replay = reasonseg_perception.entry:replay",
            "reasonseg_demo = reasonseg_perception.entry:demo",
            "reasonseg_launch = reasonseg_perception.entry:launch",
            "reasonseg_sample_drive = reasonseg_perception.entry:sample_drive",
        ],
    },
)
