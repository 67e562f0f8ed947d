#!/usr/bin/env bash
# Checks deploy/nginx.conf with `nginx -t`, without root and without touching /etc/nginx:
# renders the site as install.sh does (HTTPS included, for example.test) with a throwaway
# self-signed certificate, includes it from a minimal main config whose pid, logs and
# temporary folders are in a temporary folder, and runs nginx -t there.
#
#   deploy/check-nginx.sh            # the site as install.sh renders it
#   deploy/check-nginx.sh SITE.conf  # an already rendered site
#
# Needs nginx and openssl. Exits with nginx -t's status. Not as root, it checks a copy
# listening on 8080 and 8443 (nginx -t binds the ports).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || { echo "check-nginx.sh: nginx is not installed" >&2; exit 1; }
command -v openssl >/dev/null || { echo "check-nginx.sh: openssl is not installed" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

site=${1:-}
if [ -z "$site" ]; then
    host=example.test
    mkdir -p "$tmp/cert"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$host" \
        -keyout "$tmp/cert/privkey.pem" -out "$tmp/cert/fullchain.pem" 2>/dev/null
    site=$tmp/site.conf
    "$here/install.sh" --render-nginx "$site" --host "$host" --cert "$tmp/cert" \
        --prefix "$tmp/prefix" >/dev/null
fi
site=$(cd "$(dirname "$site")" && pwd)/$(basename "$site")
if [ "$(id -u)" != 0 ]; then
    # nginx -t binds the ports it listens on, and only root may bind 80 and 443.
    sed -E 's/^([[:space:]]*listen[[:space:]]+(\[::\]:)?)80([; ])/\18080\3/;
            s/^([[:space:]]*listen[[:space:]]+(\[::\]:)?)443([; ])/\18443\3/' \
        "$site" >"$tmp/site-unprivileged.conf"
    echo "(not root: checking a copy listening on 8080 and 8443 instead of 80 and 443)"
    site=$tmp/site-unprivileged.conf
fi

mkdir -p "$tmp/logs"
cat >"$tmp/nginx.conf" <<EOF
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log;
events {}
http {
    access_log $tmp/logs/access.log;
    client_body_temp_path $tmp/client_body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    include $site;
}
EOF
echo "== nginx -t on $site"
"$nginx_bin" -t -p "$tmp" -e "$tmp/logs/error.log" -c "$tmp/nginx.conf"
