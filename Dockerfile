# hpsearch workers and dashboard on Debian 12 and its Python 3.11.
# EXTRAS: the pyproject.toml extras installed beside the package (comma-separated):
#   gpu (default)  TensorFlow with its CUDA wheels (tensorflow[and-cuda]); the NVIDIA driver comes
#                  from the host via the container toolkit
#   ""             CPU only (what `make compose-test` builds and runs)
#   jax-cuda       JAX on NVIDIA GPUs (with KERAS_BACKEND=jax); torch: PyTorch (KERAS_BACKEND=torch)
# KERAS_BACKEND: the image's Keras backend; empty (default): the space's training.backend, else
# TensorFlow. docs/compose.md has the commands, sizes and build times.
# The dependencies install in a layer of their own, before the source is copied, so editing the
# source reuses them; a pip cache mount keeps downloads between builds that change them.
FROM debian:bookworm-slim AS deps
ARG EXTRAS=gpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 python3-venv=3.11.2-1+b1 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
# pyproject.toml alone (and an empty README) installs no package, only the dependencies,
# pinned by constraints.txt: this layer is rebuilt only when one of the two files changes
COPY pyproject.toml constraints.txt /src/
RUN --mount=type=cache,target=/root/.cache/pip \
    touch /src/README.md \
    && /opt/venv/bin/pip install -c /src/constraints.txt "/src${EXTRAS:+[$EXTRAS]}"

# the package itself, as a wheel of a few hundred kilobytes
FROM deps AS wheel
COPY README.md pyproject.toml /src/
COPY search /src/search
COPY spaces /src/spaces
COPY storage /src/storage
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheel /src

# the final image is the dependencies' stage (no compiler was ever installed) plus the wheel: a
# source change adds a small layer instead of copying gigabytes of dependencies again
FROM deps
ARG KERAS_BACKEND=""
COPY --from=wheel /wheel /tmp/wheel
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --force-reinstall /tmp/wheel/*.whl \
    && /opt/venv/bin/pip check \
    && rm -rf /tmp/wheel /src \
    && useradd --create-home --uid 10001 hpsearch \
    && mkdir -p /locks /work /artifacts /home/hpsearch/.keras \
    && chown hpsearch:hpsearch /locks /work /artifacts /home/hpsearch/.keras
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=$KERAS_BACKEND
USER 10001
WORKDIR /work
ENTRYPOINT ["hpsearch"]
CMD ["--help"]
