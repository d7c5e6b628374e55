"""Packaging beside pyproject.toml, for one thing pyproject cannot say with package discovery:
conf/ stays at the top of the repository and the wheel carries it as the ``athanor.conf``
package (its YAML files as package data); the Hydra search-path plugin ships as
``hydra_plugins.athanor_project``."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src"), "athanor.conf", "hydra_plugins.athanor_project"],
    package_dir={"": "src", "athanor.conf": "conf"},
    package_data={"athanor.conf": ["*.yaml", "**/*.yaml"], "athanor.cli": ["templates/**/*"]},
)
