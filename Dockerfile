# phasetune on a CUDA GPU (Python 3.12, the package installed).
# Build:  docker build -t phasetune .
# Run the titanium experiment (a foundation MACE from the host's mace cache, outputs kept):
#   docker run --gpus all --rm -v "$HOME/.cache/mace:/root/.cache/mace" \
#     -v "$PWD/outputs:/app/outputs" phasetune \
#     phasetune experiment=ti_phase_diagram trainer=gpu model.name=medium-mpa-0
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    WANDB_MODE=offline
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3.12 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY phasetune ./phasetune
COPY conf ./conf
RUN pip install --no-compile -e .

CMD ["phasetune", "experiment=ti_phase_diagram", "trainer=gpu"]
