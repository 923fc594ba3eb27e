# phasetune on a CUDA GPU (Python 3.12, the package installed, runs as a non-root user).
# The torch wheel brings its own CUDA libraries (requirements.lock pins them), so the base is a
# plain Python image; the host needs an NVIDIA driver for that CUDA and the container toolkit.
# Build:  docker build -t phasetune .
# Run the titanium experiment (a foundation MACE from the host's mace cache, outputs kept):
#   docker run --gpus all --rm -v "$HOME/.cache/mace:/home/phasetune/.cache/mace" \
#     -v "$PWD/outputs:/work/outputs" phasetune \
#     phasetune experiment=ti_phase_diagram trainer=gpu model.name=medium-mpa-0
FROM python:3.12.8-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    WANDB_MODE=offline \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

# dependencies first, in their own layer: a code change does not reinstall them
COPY requirements.lock /tmp/requirements.lock
# and cuEquivariance with its fused kernels for model.enable_cueq (ops wheel: torch's CUDA 13)
RUN pip install --no-compile -r /tmp/requirements.lock \
    && pip install --no-compile cuequivariance-torch==0.13.0 cuequivariance-ops-torch-cu13==0.13.0

# the package itself (configs are package data); --no-deps: the lock installed them
COPY pyproject.toml README.md /src/
COPY phasetune /src/phasetune
RUN pip install --no-compile --no-deps /src && rm -rf /src

RUN useradd --create-home --uid 1000 --user-group phasetune && mkdir -p /work && chown phasetune /work
USER 1000:1000
WORKDIR /work

CMD ["phasetune", "experiment=ti_phase_diagram", "trainer=gpu"]
