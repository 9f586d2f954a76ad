# One image for every Thankly process; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, pinned by constraints.txt, in a layer that only pyproject.toml and
# constraints.txt invalidate: a code edit rebuilds from the COPY below, not from here.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code itself, without touching the dependencies installed above.
COPY README.md ./
COPY worker ./worker
COPY tasks ./tasks
COPY migrations ./migrations
RUN pip install --no-deps .

# What ops staff edit; compose also mounts these read-only so edits need no rebuild.
COPY templates ./templates
COPY config ./config

# /app/metrics: where every process writes its Prometheus counters (a shared volume in
# docker-compose.yml); it must exist, owned by the user, before a volume is mounted on it.
RUN useradd --system --uid 10001 --home-dir /app thankly \
    && mkdir -p /app/var /app/metrics \
    && chown thankly /app/var /app/metrics
USER thankly

EXPOSE 8000
ENTRYPOINT ["thankly"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
