# img2vid's container image: the CLI, the REST API and the WebUI (`img2vid serve`).
#
#   docker build -t img2vid .                                    # CPU (torch's CPU build)
#   docker build -t img2vid:cuda --build-arg TORCH=cuda .         # NVIDIA GPUs (torch's CUDA wheels)
#
# FFmpeg's libraries come with PyAV's wheels and OpenCV's with opencv-python-headless, so
# nothing is compiled and the base needs only Python >= 3.11 with venv.
ARG BASE=python:3.12-slim-bookworm

# The dependencies that pyproject.toml lists for EXTRAS (without torch's extras for TORCH=none).
FROM ${BASE} AS requirements
ARG TORCH=cpu
ARG EXTRAS=server,diffusion
COPY pyproject.toml /pyproject.toml
RUN extras="$EXTRAS"; [ "$TORCH" = none ] && extras=$(echo ",$extras," | sed 's/,diffusion,/,/; s/,quantize,/,/; s/^,//; s/,$//'); \
    python3 -c "import sys, tomllib; p = tomllib.load(open('/pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + [d for e in sys.argv[1].split(',') if e for d in p['optional-dependencies'][e]]))" \
        "$extras" > /requirements.txt

FROM ${BASE}

# cpu: torch's CPU build from TORCH_INDEX_URL (PyPI's Linux torch is the CUDA build and would
# pull ~3 GB of CUDA libraries the CPU image never uses); cuda: PyPI's torch with its CUDA 13
# wheels (the host's driver comes in through the NVIDIA container runtime; an older driver
# wants another CUDA build: TORCH_INDEX_URL=https://download.pytorch.org/whl/cuXYZ); none:
# no torch and no diffusion (the camera engine only).
ARG TORCH=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG EXTRAS=server,diffusion

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/img2vid \
    PATH=/opt/img2vid/bin:$PATH

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/img2vid img2vid \
    && python3 -m venv /opt/img2vid \
    && mkdir -p /data/outputs /data/logs /data/cache \
    && chown img2vid:img2vid /data /data/outputs /data/logs /data/cache \
    && chmod 1777 /data/outputs /data/logs /data/cache

# torch first, in its own layer: the biggest download, and the one the variants differ in.
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    case "$TORCH" in \
      cpu)  pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}+cpu" ;; \
      cuda) case "$TORCH_INDEX_URL" in */whl/cpu) index= ;; *) index=$TORCH_INDEX_URL ;; esac; \
            pip install ${index:+--extra-index-url "$index"} "torch==${TORCH_VERSION}" ;; \
      none) ;; \
      *) echo "TORCH must be cpu, cuda or none, not '$TORCH'" >&2; exit 2 ;; \
    esac

# Then the dependencies. The list comes from the stage above, so a change to pyproject.toml
# that leaves it alone (version, entry point, metadata) keeps this layer.
COPY constraints-cpu.txt /tmp/img2vid/
COPY --from=requirements /requirements.txt /tmp/img2vid/
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    pip install -c /tmp/img2vid/constraints-cpu.txt -r /tmp/img2vid/requirements.txt

COPY pyproject.toml README.md LICENSE /tmp/img2vid/
COPY src /tmp/img2vid/src
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    pip install --no-deps /tmp/img2vid && rm -rf /tmp/img2vid && img2vid --version

USER img2vid
WORKDIR /data
# Everything the app writes lives under /data: outputs (and the job database beside them),
# logs, and the model caches, so a new image keeps the jobs, videos and downloaded weights.
ENV IMG2VID_OUTPUT__DIRECTORY=/data/outputs \
    IMG2VID_LOGS__DIRECTORY=/data/logs \
    IMG2VID_MODEL_CACHE=/data/cache/img2vid \
    HF_HOME=/data/cache/huggingface \
    GRADIO_ANALYTICS_ENABLED=False \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
VOLUME ["/data/outputs", "/data/logs", "/data/cache"]
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('IMG2VID_SERVER__PORT', '7860'), timeout=4)"

ENTRYPOINT ["img2vid"]
# Listening on every interface of the container: set IMG2VID_SERVER__TOKEN (the API and UI
# then need it) and publish the port on the host's loopback unless others should reach it.
CMD ["serve", "--host", "0.0.0.0"]
