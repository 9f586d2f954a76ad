# One image for every Thankly process; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (pinned by constraints.txt) so code edits do not reinstall them.
COPY pyproject.toml constraints.txt README.md ./
COPY worker ./worker
COPY tasks ./tasks
COPY migrations ./migrations
RUN pip install -c constraints.txt .

# What ops staff edit; compose also mounts these read-only so edits need no rebuild.
COPY templates ./templates
COPY config ./config

RUN useradd --system --uid 10001 --home-dir /app thankly \
    && mkdir -p /app/var \
    && chown thankly /app/var
USER thankly

EXPOSE 8000
ENTRYPOINT ["thankly"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
