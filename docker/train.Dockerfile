# Training image: CUDA PyTorch base for GPU clusters (one task per GPU; see training/README.md for the
# torchrun and SLURM recipes), the same venv and model cache as the tests use.
#
#   docker build -f docker/train.Dockerfile -t reasonseg:train .
#   docker run --gpus all --ipc host -v /data:/data reasonseg:train .venv/bin/python -m pytest -q tests
ARG BASE_IMAGE=nvcr.io/nvidia/cuda:12.6.3-cudnn-devel-ubuntu24.04
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive REASONSEG_CACHE=/opt/reasonseg-cache PYTHON=python3.11
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev npm git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/reasonseg
COPY . .
RUN bash scripts/setup.sh
ENTRYPOINT []
CMD [".venv/bin/python", "-m", "pytest", "-q", "tests"]
