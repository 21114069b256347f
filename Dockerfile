# The controller image: `autoscaler controller` by default; any other subcommand works
# too (`docker run IMAGE replay ...`, the tuning Job's `tune shard`).
#
# Two stages: the build stage installs the package and its dependencies (all binary
# wheels, no compiler needed) into /install; the final stage copies only that, so no
# source tree or pip cache ships.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY autoscaler ./autoscaler
RUN pip install --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only in the cluster.
# OPENBLAS_NUM_THREADS: OpenBLAS sizes its pool from the node's cores, not the cgroup's.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1 \
    MPLCONFIGDIR=/tmp/matplotlib
# The distroless "nonroot" uid/gid, the one the Deployment's securityContext runs as.
RUN groupadd --gid 65532 nonroot && \
    useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin nonroot
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 6443
ENTRYPOINT ["autoscaler"]
CMD ["controller"]
