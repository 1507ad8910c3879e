# hpsearch workers and dashboard. GPU support comes from TensorFlow's CUDA wheels
# (tensorflow[and-cuda]); the NVIDIA driver comes from the host via the container toolkit.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY pyproject.toml README.md /src/
COPY search /src/search
COPY spaces /src/spaces
COPY storage /src/storage
RUN /opt/venv/bin/pip install "/src[gpu]"

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 hpsearch \
    && mkdir -p /locks /work /artifacts /home/hpsearch/.keras \
    && chown hpsearch:hpsearch /locks /work /artifacts /home/hpsearch/.keras
USER 10001
WORKDIR /work
ENTRYPOINT ["hpsearch"]
CMD ["--help"]
