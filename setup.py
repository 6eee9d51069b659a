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
    package_data={"channelstream.apiexplorer": ["*"], "channelstream": ["static/**/*"]},
    include_package_data=True,
    zip_safe=False,
    install_requires=[
        "pyramid>=2.0",
        "gevent>=24.2",
        "gevent-websocket>=0.10.1",
        "itsdangerous>=2.0",
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
            "pytest>=8.0",
            "pytest-timeout>=2.2",
            "webtest>=3.0",
            "websocket-client>=1.7",
            "redis>=5.0",
            "openapi-spec-validator>=0.7",
            "schemathesis>=4.0,<5",
            "playwright>=1.40",
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
