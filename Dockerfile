# phasetune on a CUDA GPU. Build: docker build -t phasetune .
# Run:   docker run --gpus all --rm -v "$PWD/outputs:/app/outputs" phasetune phasetune-sample device=cuda
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY phasetune ./phasetune
COPY conf ./conf
RUN pip install -e .

ENTRYPOINT []
CMD ["phasetune-sample", "device=cuda"]
