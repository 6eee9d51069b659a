"""Packaging for channelstream. `pip install -e .[test]` gives a development install."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "src/channelstream/__init__.py").read_text()
).group(1)

setup(
    name="channelstream",
    version=VERSION,
    description="Websocket server driven by a signed JSON REST API: channels, presence, "
    "history and direct messages for web applications (Channelstream 0.7 compatible).",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.11",
    package_dir={"": "src", "channelstream.apiexplorer": "static/apiexplorer"},
    packages=find_packages("src") + ["channelstream.apiexplorer"],
    # py.typed: the package's type hints are for its users' type checkers too (PEP 561)
    package_data={
        "channelstream.apiexplorer": ["*"],
        "channelstream": ["py.typed", "static/**/*"],
    },
    include_package_data=True,
    zip_safe=False,
    install_requires=[
        "pyramid>=2.0",
        # The versions the tests cover (= channelstream.gevent_edge.TESTED_REQUIREMENTS): the
        # server leans on private details of both. gevent numbers releases YY.M, not semver:
        # <27 keeps out next year's, and one within the range that moved a detail is refused
        # at start by channelstream.gevent_edge.
        "gevent>=26.9,<27",
        "gevent-websocket>=0.10.1,<0.11",
        "itsdangerous>=2.0",
        "PyJWT>=2.8",  # connection tokens (HS256)
        "marshmallow>=3.20",
        "apispec>=6.0",
        "PasteDeploy>=3.0",
        "redis>=5.0",
        "swagger-ui-bundle>=1.1.0",
        "prometheus-client>=0.17",
        "urllib3>=1.26",  # channelstream.client
    ],
    extras_require={
        "test": [
            # every third-party module the tests import, even one another package brings
            "pytest>=8.0",
            "pytest-timeout>=2.2",
            "hypothesis>=6.100",
            "webtest>=3.0",
            "WebOb>=1.8",
            "websocket-client>=1.7",
            "redis>=5.0",
            "openapi-spec-validator>=0.7",
            "openapi-schema-validator>=0.6",
            "jsonschema>=4.18",
            "schemathesis>=4.0,<5",
            "playwright>=1.40",
            "PyYAML>=6.0",  # tests/docker read compose, Prometheus and Grafana files
        ],
        "dev": ["ruff>=0.6", "mypy>=1.10"],
    },
    entry_points={
        "console_scripts": [
            "channelstream = channelstream.cli:main",
            "channelstream_utils = channelstream.cli:utils_main",
        ],
        "paste.app_factory": ["main = channelstream:main"],
        "paste.server_runner": ["main = channelstream.server:paste_server_runner"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Framework :: Pyramid",
        "Topic :: Internet :: WWW/HTTP :: WSGI :: Server",
    ],
)
