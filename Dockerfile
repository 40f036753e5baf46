# One image for every Tickerbell process (the Procfile's commands), for docker-compose.
# Stage 1 fetches the Spark Kafka connector jars with Maven (same pom as `make setup`).
FROM maven:3.9-eclipse-temurin-17 AS jars
WORKDIR /build
COPY infra/spark-kafka/pom.xml infra/spark-kafka/pom.xml
RUN cd infra/spark-kafka && mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DincludeScope=runtime \
      -DincludeArtifactIds=spark-sql-kafka-0-10_2.13,spark-token-provider-kafka-0-10_2.13,kafka-clients,commons-pool2 \
      -DoutputDirectory=/build/jars/spark

FROM node:20-slim AS assets
WORKDIR /build/web
COPY web/package*.json ./
RUN npm install --no-audit --no-fund --omit=dev

FROM python:3.11-slim-bookworm
# the Spark job needs a JRE 17
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 tickerbell
WORKDIR /app
COPY pyproject.toml README.md ./
COPY events events
COPY ingest ingest
COPY stream stream
COPY predict predict
COPY alerts alerts
COPY web web
RUN pip install --no-cache-dir . && pip install --no-cache-dir -e . --no-deps
COPY migrations migrations
COPY alembic.ini Procfile gunicorn.conf.py ./
COPY --from=jars /build/jars var/jars
COPY --from=assets /build/web/node_modules web/node_modules
RUN mkdir -p var && chown -R tickerbell:tickerbell var
USER tickerbell
ENV PYTHONUNBUFFERED=1 PYSPARK_PYTHON=/usr/local/bin/python TICKERBELL_VAR=/app/var PORT=5000
EXPOSE 5000
CMD ["python", "-m", "events", "banner"]
