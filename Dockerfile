# The channelstream server, configured by CHANNELSTREAM_* environment variables alone:
#
#   docker build -t channelstream .
#   docker run --rm -p 8000:8000 -e CHANNELSTREAM_ALLOW_POSTING_FROM= channelstream
#
# Without CHANNELSTREAM_SECRET / CHANNELSTREAM_ADMIN_SECRET the server makes random ones and
# logs them; *_FILE variables read them from files (Docker secrets). See docs/deployment.md.

# Any image with Python 3.11+ at the same path in both stages (the venv points at it).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY setup.py pyproject.toml README.md ./
COPY src ./src
COPY static ./static
# One venv holding the package and its dependencies, without pip (setuptools stays: pyramid
# imports pkg_resources).
RUN python -m venv /opt/channelstream \
 && /opt/channelstream/bin/pip install . \
 && /opt/channelstream/bin/pip uninstall -y -q pip

FROM ${BASE_IMAGE}
# A fixed uid: volumes shared between containers (deploy/compose.yml) agree on the owner.
# /var/lib/channelstream is the one place it may write (e.g. secrets files made at first start).
RUN groupadd --system --gid 10001 channelstream \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/channelstream \
        --shell /usr/sbin/nologin channelstream \
 && install -d -o channelstream -g channelstream -m 0700 /var/lib/channelstream
COPY --from=builder /opt/channelstream /opt/channelstream
ENV PATH=/opt/channelstream/bin:$PATH PYTHONUNBUFFERED=1
USER channelstream
WORKDIR /var/lib/channelstream
EXPOSE 8000
# The server itself handles SIGTERM as PID 1: /ready turns 503, then websockets close with 1001.
STOPSIGNAL SIGTERM
# Slim images have no curl: ask /health with the interpreter the server runs on.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CHANNELSTREAM_PORT', '8000'), timeout=2)"]
CMD ["channelstream"]
