# syntax=docker/dockerfile:1
# ProxyMedic image: one image, two processes (`proxymedic operator`, `proxymedic agent`).
#
#   docker build -t proxymedic:dev .
#
# The base is pinned by tag. To pin it by digest as well, resolve the digest once and put it
# after the tag in both FROM lines, e.g.:
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
#   FROM python:3.11-slim-bookworm@sha256:<digest> AS build
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a wheel of ProxyMedic and wheels of its runtime dependencies --------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxymedic ./proxymedic
RUN python -m pip wheel --wheel-dir /wheels .

# --- runtime: the installed wheel and its dependencies, nothing else ------------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Install from the wheels only (no index, no compiler), then drop pip itself: the runtime image
# never installs anything.
# The agent reads kube-proxy's rules where there is no IPVS: nftables mode through libnftables
# (libnftables1), iptables mode through iptables-save and ip6tables-save of both backends
# (iptables: iptables-nft-save and iptables-legacy-save). Nothing else comes from apt.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libnftables1 iptables \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links /wheels proxymedic \
 && python -m pip uninstall --yes pip setuptools wheel \
 && rm -rf /root/.cache
LABEL org.opencontainers.image.title="proxymedic" \
      org.opencontainers.image.description="Keeps kube-proxy's dataplane honest" \
      org.opencontainers.image.licenses="Apache-2.0"
# The operator runs as this non-root user. The agent's pod overrides it with runAsUser: 0 and
# only CAP_NET_ADMIN (see charts/proxymedic/templates/agent-daemonset.yaml and docs/security.md):
# Kubernetes grants added capabilities to a non-root process's bounding set but not its
# effective set, so a non-root agent would have no CAP_NET_ADMIN for netlink.
USER 65532:65532
ENTRYPOINT ["proxymedic"]
CMD ["--help"]
