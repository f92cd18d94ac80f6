# Stand-in for the official redis:7 image, for tests/deploy/compose-check.sh
# on machines that reach no container registry: Debian 12's redis-server
# (7.0) on the local debian:bookworm-slim base, tagged redis:7 so
# docker-compose.yml's `image: redis:7` resolves without a pull. What
# docker-compose.yml relies on is kept: redis-server and redis-cli in PATH,
# /data as the working directory and volume, owned by the redis user the
# server runs as, and protected mode off by default (the official image
# patches it off; here the entry point adds --protected-mode no when the
# command is redis-server), so the other containers may connect.
#
# SPDX-License-Identifier: MIT
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
COPY standin-redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
LABEL org.superimap.standin="redis:7"
VOLUME /data
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["/bin/sh", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
