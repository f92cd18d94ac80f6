# Stand-in for the official nginx:stable image, for
# tests/deploy/compose-check.sh on machines that reach no container registry:
# Debian 12's nginx (1.22) on the local debian:bookworm-slim base, tagged
# nginx:stable so docker-compose.yml's `image: nginx:stable` resolves without
# a pull. What docker-compose.yml relies on is kept: /bin/sh, nginx in PATH,
# an "nginx" user for docker/nginx.conf's `user nginx;`, the default command
# `nginx -g 'daemon off;'` and SIGQUIT (graceful) as the stop signal. The
# official image's /docker-entrypoint.sh (templates, NGINX_* variables) is
# not reproduced: docker-compose.yml replaces the entry point anyway.
#
# SPDX-License-Identifier: MIT
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && groupadd --system nginx \
    && useradd --system --gid nginx --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nginx
LABEL org.superimap.standin="nginx:stable"
EXPOSE 80 443
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
