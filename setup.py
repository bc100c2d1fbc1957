"""Which files the wheel holds (the rest of the metadata is in pyproject.toml).

suites/ and dashboard/ live beside harness/ in a checkout; a wheel carries them inside the package as
harness/_suites and harness/_dashboard, where harness/paths.py finds them when there is no checkout around.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["harness", "harness.*"]), "harness._suites", "harness._dashboard"],
    package_dir={"harness._suites": "suites", "harness._dashboard": "dashboard"},
    package_data={"harness": ["py.typed"], "harness._suites": ["**/*"], "harness._dashboard": ["**/*.py"]},
    # a user-supplied file a suite reads (suite.yaml user_data: GSM8K's train split) is never packaged
    exclude_package_data={"": ["__pycache__/*", "*.pyc"], "harness._suites": ["gsm8k/data/train.jsonl"]},
)
