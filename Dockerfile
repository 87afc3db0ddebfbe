# rtserver on its embedded defaults: the bundled model, sessions journaled under /data.
# The image's steps call scripts/install, the same script CI runs. llama.cpp is compiled for the CPU of the
# machine that builds the image (docs/adr/0002-llama-cpp-build-flags.md): build it where it will run, or pass
# --build-arg RTSERVER_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" for a portable one.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY . /app
ARG RTSERVER_CMAKE_ARGS=""
RUN RTSERVER_CMAKE_ARGS="$RTSERVER_CMAKE_ARGS" scripts/install

# It listens on 0.0.0.0, so it is protected by default: with no key and no RTSERVER_TOKEN_SECRET configured, the
# first start creates an API key in /data/keys.json and logs it once (`api_key_created`); keep /data on a volume.
ENV RTSERVER_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz')"
STOPSIGNAL SIGTERM
CMD [".venv/bin/rtserver", "serve", "--host", "0.0.0.0", "--port", "8000"]
