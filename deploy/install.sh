#!/usr/bin/env bash
# smsadmin on a Debian 12 server: installs or upgrades everything, safe to run again.
#
#   sudo deploy/install.sh --host sms.example.org [--postgres]
#
# Installs python3-venv, Redis (appendonly, noeviction), nginx, certbot and, with
# --postgres, PostgreSQL; creates the system user; copies this checkout to
# /opt/smsadmin/app with its venv in /opt/smsadmin/venv; writes /etc/smsadmin/env once
# (never overwritten); migrates; collects static files; installs and restarts the
# smsadmin-web, smsadmin-worker and smsadmin-beat units and the nginx site; then prints
# what is left to do. Run it again after `git pull` to upgrade.
#
# An extra worker machine (README, "Scaling out"): copy /etc/smsadmin/env from the first
# machine, then
#   sudo deploy/install.sh --worker-only
#
# Without root and systemd (tests, trying it out):
#   deploy/install.sh --prefix /tmp/x --no-system [--no-pip --venv .venv] --host example.test
# writes every file under /tmp/x and prints the system commands it skips.
#   deploy/install.sh --render-nginx OUT --host example.test [--cert DIR]
# only renders the nginx site, HTTPS included, to OUT.
set -euo pipefail
umask 022

usage() {
    cat <<'USAGE'
Usage: install.sh [options]
  --host NAME         public host name (sms.example.org); needed on the first run,
                      later read from PUBLIC_BASE_URL in the env file
  --postgres          install PostgreSQL and use it (new env files only; see README)
  --worker-only       an extra worker machine: only smsadmin-worker runs (web and beat
                      are disabled), no nginx, no Redis; copy the env file of the
                      first machine to /etc/smsadmin/env before running it
  --user NAME         system user the app runs as (default smsadmin; with --no-system
                      the current user)
  --prefix DIR        put /etc, /opt and /var under DIR
  --no-system         skip apt-get, useradd, chown, systemctl, nginx reload, Redis and
                      PostgreSQL setup; print what they would do
  --no-pip            do not create or update the venv (it must exist: see --venv)
  --venv DIR          use this existing virtualenv instead of /opt/smsadmin/venv
  --cert DIR          folder with fullchain.pem and privkey.pem
                      (default /etc/letsencrypt/live/HOST)
  --render-nginx OUT  only render the nginx site (HTTPS included) to OUT and exit
  -h, --help          this help
USAGE
}

say() { printf '== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY_DIR=$SRC_DIR/deploy

HOST=""
PREFIX=""
NO_SYSTEM=0
NO_PIP=0
POSTGRES=0
WORKER_ONLY=0
APP_USER=""
VENV_DIR=""
CERT_DIR=""
RENDER_NGINX=""

while [ $# -gt 0 ]; do
    case $1 in
    --host) HOST=${2:?--host needs a name}; shift 2 ;;
    --prefix) PREFIX=${2:?--prefix needs a folder}; shift 2 ;;
    --no-system) NO_SYSTEM=1; shift ;;
    --no-pip) NO_PIP=1; shift ;;
    --postgres) POSTGRES=1; shift ;;
    --worker-only) WORKER_ONLY=1; shift ;;
    --user) APP_USER=${2:?--user needs a name}; shift 2 ;;
    --venv) VENV_DIR=${2:?--venv needs a folder}; shift 2 ;;
    --cert) CERT_DIR=${2:?--cert needs a folder}; shift 2 ;;
    --render-nginx) RENDER_NGINX=${2:?--render-nginx needs an output file}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
    esac
done

if [ -n "$PREFIX" ]; then
    mkdir -p "$PREFIX"
    PREFIX=$(cd "$PREFIX" && pwd)
fi
if [ -n "$VENV_DIR" ]; then
    [ -x "$VENV_DIR/bin/python" ] || die "--venv $VENV_DIR: no bin/python there"
    VENV_DIR=$(cd "$VENV_DIR" && pwd)
fi

# --- Where things go ----------------------------------------------------------------
CONF_DIR=$PREFIX/etc/smsadmin
ENV_FILE=$CONF_DIR/env
OPT_DIR=$PREFIX/opt/smsadmin
APP_DIR=$OPT_DIR/app
VENV_DIR=${VENV_DIR:-$OPT_DIR/venv}
DATA_DIR=$PREFIX/var/lib/smsadmin
STATIC_DIR=$DATA_DIR/static
ACME_ROOT=$PREFIX/var/www/letsencrypt
UNIT_DIR=$PREFIX/etc/systemd/system
NGINX_SITE=$PREFIX/etc/nginx/sites-available/smsadmin
NGINX_ENABLED=$PREFIX/etc/nginx/sites-enabled/smsadmin
MANAGE_BIN=$PREFIX/usr/local/bin/smsadmin-manage
REDIS_CONF=$PREFIX/etc/redis/redis.conf
UNITS=(smsadmin-web smsadmin-worker smsadmin-beat)
WEB_GROUP=www-data # nginx's group on Debian: may enter the data and socket folders
DB_NAME=smsadmin

if [ -z "$APP_USER" ]; then
    if [ "$NO_SYSTEM" = 1 ]; then APP_USER=$(id -un); else APP_USER=smsadmin; fi
fi
[[ $APP_USER =~ ^[a-z_][a-z0-9_-]*$ ]] || die "--user $APP_USER: not a valid user name"
APP_GROUP=$APP_USER

# --- Helpers ------------------------------------------------------------------------

# A system step: run it, or with --no-system print it.
system() {
    if [ "$NO_SYSTEM" = 1 ]; then
        note "skipped (--no-system): $(printf '%q ' "$@")"
    else
        "$@"
    fi
}

# Escape a value for the right-hand side of a sed s|||.
sed_escape() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }

# render TEMPLATE OUT KEY=VALUE...: replace each @KEY@; fail if any @PLACEHOLDER@ is left.
render() {
    local template=$1 out=$2 pair key value
    shift 2
    local args=()
    for pair in "$@"; do
        key=${pair%%=*}
        value=${pair#*=}
        args+=(-e "s|@${key}@|$(sed_escape "$value")|g")
    done
    sed "${args[@]}" "$template" >"$out"
    if grep -n '@[A-Z_][A-Z_]*@' "$out" >&2; then
        die "$template: placeholders left unfilled in $out (above)"
    fi
}

# put_file NEW DEST MODE: move NEW to DEST unless DEST has the same content already.
put_file() {
    local new=$1 dest=$2 mode=$3
    chmod "$mode" "$new"
    if [ -f "$dest" ] && cmp -s "$new" "$dest"; then
        rm -f "$new"
        chmod "$mode" "$dest"
        note "unchanged: $dest"
    else
        mv -f "$new" "$dest"
        note "wrote $dest"
    fi
}

# redis_set KEY VALUE: set one redis.conf directive; fails (1) when it was set already.
redis_set() {
    local key=$1 value=$2
    if grep -Eq "^${key}[[:space:]]+${value}\$" "$REDIS_CONF"; then
        return 1
    elif grep -Eq "^#?[[:space:]]*${key}[[:space:]]" "$REDIS_CONF"; then
        sed -i -E "0,/^#?[[:space:]]*${key}[[:space:]].*/s//${key} ${value}/" "$REDIS_CONF"
    else
        printf '%s %s\n' "$key" "$value" >>"$REDIS_CONF"
    fi
}

host_from_env() {
    [ -f "$ENV_FILE" ] || return 0
    sed -n 's|^PUBLIC_BASE_URL=[a-z]*://\([^/:]*\).*|\1|p' "$ENV_FILE" | tail -n 1
}

public_base_url() {
    local url=""
    [ -f "$ENV_FILE" ] && url=$(sed -n 's|^PUBLIC_BASE_URL=||p' "$ENV_FILE" | tail -n 1)
    url=${url%/}
    printf '%s' "${url:-https://$HOST}"
}

# The nginx site; only the port 80 server unless WITH_TLS=1.
render_nginx() {
    local out=$1 with_tls=$2
    render "$DEPLOY_DIR/nginx.conf" "$out" \
        HOST="$HOST" CERT_DIR="$CERT_DIR" STATIC_DIR="$STATIC_DIR" ACME_ROOT="$ACME_ROOT"
    if [ "$with_tls" != 1 ]; then
        sed -i '/^# -- https:/,$d' "$out"
    fi
}

if [ "$WORKER_ONLY" = 1 ] && [ ! -f "$ENV_FILE" ]; then
    die "--worker-only: copy $ENV_FILE from the first machine here first (same SECRET_KEY, database and broker)"
fi

# --- Host name and certificate ------------------------------------------------------
[ -n "$HOST" ] || HOST=$(host_from_env)
[ -n "$HOST" ] || die "--host is needed (the public name, e.g. --host sms.example.org)"
[[ $HOST =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "--host $HOST: not a host name"
CERT_DIR=${CERT_DIR:-$PREFIX/etc/letsencrypt/live/$HOST}

if [ -n "$RENDER_NGINX" ]; then
    render_nginx "$RENDER_NGINX" 1
    echo "Rendered the nginx site for $HOST to $RENDER_NGINX"
    exit 0
fi

# --- Checks -------------------------------------------------------------------------
[ -f "$SRC_DIR/manage.py" ] || die "run install.sh from a smsadmin checkout (no manage.py in $SRC_DIR)"
case $SRC_DIR/ in
"$OPT_DIR"/*) die "run it from a checkout outside $OPT_DIR (it replaces $APP_DIR)" ;;
esac
if [ "$NO_SYSTEM" = 0 ]; then
    [ "$(id -u)" = 0 ] || die "run it as root (sudo $0 ...), or add --no-system"
    command -v systemctl >/dev/null || die "systemctl not found: this script needs systemd (or --no-system)"
    if ! grep -qs '^VERSION_ID="12"' /etc/os-release || ! grep -qs '^ID=debian' /etc/os-release; then
        note "warning: made for Debian 12; this is $(sed -n 's/^PRETTY_NAME=//p' /etc/os-release 2>/dev/null | tr -d '"')"
    fi
fi
if [ "$NO_PIP" = 1 ] && [ ! -x "$VENV_DIR/bin/python" ]; then
    die "--no-pip needs an existing venv: none in $VENV_DIR (use --venv DIR)"
fi

# --- Packages -----------------------------------------------------------------------
packages=(python3 python3-venv ca-certificates)
[ "$WORKER_ONLY" = 1 ] || packages+=(redis-server nginx certbot)
[ "$POSTGRES" = 1 ] && packages+=(postgresql)
say "Debian packages: ${packages[*]}"
system apt-get update -qq
system env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"

# Broker messages must survive a restart and never be evicted to make room.
if [ "$WORKER_ONLY" = 1 ]; then
    say "Redis: none here (--worker-only: CELERY_BROKER_URL names the shared one)"
elif [ "$NO_SYSTEM" = 1 ]; then
    say "Redis: appendonly yes, maxmemory-policy noeviction"
    note "skipped (--no-system): set appendonly yes, maxmemory-policy noeviction in $REDIS_CONF"
else
    say "Redis: appendonly yes, maxmemory-policy noeviction"
    redis_changed=0
    redis_set appendonly yes && redis_changed=1
    redis_set maxmemory-policy noeviction && redis_changed=1
    systemctl enable --quiet redis-server
    if [ "$redis_changed" = 1 ]; then systemctl restart redis-server; else systemctl start redis-server; fi
fi

# --- User and folders ---------------------------------------------------------------
say "System user $APP_USER"
if [ "$NO_SYSTEM" = 1 ]; then
    note "skipped (--no-system): useradd --system --user-group --home-dir $DATA_DIR --shell /usr/sbin/nologin $APP_USER"
elif id -u "$APP_USER" >/dev/null 2>&1; then
    note "exists"
else
    useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
        --shell /usr/sbin/nologin "$APP_USER"
    note "created"
fi

say "Folders"
# make_dir PATH MODE OWNER:GROUP
make_dir() {
    mkdir -p "$1"
    chmod "$2" "$1"
    system chown "$3" "$1"
}
mkdir -p "$UNIT_DIR" "$(dirname "$NGINX_SITE")" "$(dirname "$NGINX_ENABLED")" "$(dirname "$MANAGE_BIN")"
make_dir "$OPT_DIR" 0755 root:root
# The app user reads its env file; nobody else enters.
make_dir "$CONF_DIR" 0750 "root:$APP_GROUP"
# The data folder: nginx's group may pass through to static/ (0710: it cannot list it);
# the database, beat's schedule and the imports stay the app's alone.
make_dir "$DATA_DIR" 0710 "$APP_USER:$WEB_GROUP"
make_dir "$DATA_DIR/imports" 0700 "$APP_USER:$APP_GROUP"
make_dir "$DATA_DIR/backups" 0700 "$APP_USER:$APP_GROUP"
make_dir "$STATIC_DIR" 0755 "$APP_USER:$APP_GROUP"
make_dir "$ACME_ROOT" 0755 root:root
note "$CONF_DIR 0750, $DATA_DIR 0710 (nginx reaches static/ only), imports/ and backups/ 0700"

# --- The app ------------------------------------------------------------------------
say "App: $SRC_DIR -> $APP_DIR"
# A fresh copy every time, swapped in whole, so files removed upstream go too.
rm -rf "$APP_DIR.new" "$APP_DIR.old"
mkdir -p "$APP_DIR.new"
tar -C "$SRC_DIR" \
    --exclude=./.git --exclude=./.venv --exclude=./var --exclude='./var-*' --exclude=./.env \
    --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude=__pycache__ --exclude='*.pyc' \
    -cf - . | tar -C "$APP_DIR.new" --no-same-owner --no-same-permissions -xf -
if [ -d "$APP_DIR" ]; then mv "$APP_DIR" "$APP_DIR.old"; fi
mv "$APP_DIR.new" "$APP_DIR"
rm -rf "$APP_DIR.old"
note "copied (owned by root: the app user cannot change its code)"

say "Python venv: $VENV_DIR"
if [ "$NO_PIP" = 1 ]; then
    note "skipped (--no-pip): using $VENV_DIR as it is"
else
    [ -x "$VENV_DIR/bin/python" ] || python3 -m venv "$VENV_DIR"
    "$VENV_DIR/bin/python" -m pip install -q --upgrade pip
    "$VENV_DIR/bin/python" -m pip install -q -r "$APP_DIR/requirements.txt"
    note "requirements.txt installed"
fi
# Compiled once here: the app user cannot write into the code.
"$VENV_DIR/bin/python" -m compileall -q "$APP_DIR" >/dev/null

# --- Settings -----------------------------------------------------------------------
say "Settings: $ENV_FILE"
if [ -e "$ENV_FILE" ]; then
    note "kept as it is (never overwritten; compare with $DEPLOY_DIR/env.example for new settings)"
else
    secret=$(head -c 48 /dev/urandom | base64 -w 0 | tr '+/' '-_' | tr -d '=')
    tmp=$(mktemp "$CONF_DIR/.env.XXXXXX")
    render "$DEPLOY_DIR/env.example" "$tmp" SECRET_KEY="$secret" HOST="$HOST" DATA_DIR="$DATA_DIR"
    if [ "$POSTGRES" = 1 ]; then
        sed -i "s|^#DATABASE_URL=postgres:///.*|DATABASE_URL=postgres:///$DB_NAME|" "$tmp"
    fi
    chmod 600 "$tmp"
    mv "$tmp" "$ENV_FILE"
    system chown "$APP_USER:$APP_GROUP" "$ENV_FILE"
    note "wrote it with a new SECRET_KEY (mode 600, owned by $APP_USER)"
fi
if [ "$POSTGRES" = 1 ] && ! grep -q '^DATABASE_URL=postgres' "$ENV_FILE"; then
    note "warning: --postgres, but $ENV_FILE sets no PostgreSQL DATABASE_URL: the app stays on"
    note "SQLite. To move, add DATABASE_URL=postgres:///$DB_NAME (existing data is not copied)."
fi

if [ "$POSTGRES" = 1 ]; then
    say "PostgreSQL: role $APP_USER (peer authentication, no password), database $DB_NAME"
    if [ "$NO_SYSTEM" = 1 ]; then
        note "skipped (--no-system): createuser $APP_USER; createdb -O $APP_USER $DB_NAME"
    else
        systemctl enable --now --quiet postgresql
        pg() { (cd / && runuser -u postgres -- "$@"); }
        if [ "$(pg psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='$APP_USER'")" != 1 ]; then
            pg createuser "$APP_USER"
        fi
        if [ "$(pg psql -tAc "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'")" != 1 ]; then
            pg createdb -O "$APP_USER" "$DB_NAME"
        fi
    fi
fi

# --- manage.py: the wrapper, migrate, collectstatic ---------------------------------
say "smsadmin-manage: $MANAGE_BIN"
tmp=$(mktemp "$MANAGE_BIN.XXXXXX")
render "$DEPLOY_DIR/smsadmin-manage" "$tmp" USER="$APP_USER" ENV_FILE="$ENV_FILE" \
    APP_DIR="$APP_DIR" DATA_DIR="$DATA_DIR" VENV="$VENV_DIR" MANAGE_BIN="$MANAGE_BIN"
put_file "$tmp" "$MANAGE_BIN" 0755

say "Database migrations"
(umask 027 && "$MANAGE_BIN" migrate --noinput)
say "Static files: $STATIC_DIR"
(umask 022 && "$MANAGE_BIN" collectstatic --noinput -v 0)

# --- systemd units ------------------------------------------------------------------
say "systemd units: $UNIT_DIR"
for unit in "${UNITS[@]}"; do
    tmp=$(mktemp "$UNIT_DIR/.$unit.XXXXXX")
    render "$DEPLOY_DIR/systemd/$unit.service" "$tmp" USER="$APP_USER" GROUP="$APP_GROUP" \
        ENV_FILE="$ENV_FILE" APP_DIR="$APP_DIR" VENV="$VENV_DIR" DATA_DIR="$DATA_DIR" \
        WEB_GROUP="$WEB_GROUP"
    put_file "$tmp" "$UNIT_DIR/$unit.service" 0644
done
system systemctl daemon-reload
if [ "$WORKER_ONLY" = 1 ]; then
    # Exactly one beat in the whole deployment, and the web runs on the first machine.
    system systemctl disable --now --quiet smsadmin-web smsadmin-beat
    RUNNING=(smsadmin-worker)
else
    RUNNING=("${UNITS[@]}")
fi
system systemctl enable --quiet "${RUNNING[@]}"
system systemctl restart "${RUNNING[@]}"

if [ "$WORKER_ONLY" = 1 ]; then
    echo
    echo "smsadmin-worker is installed and running; web, beat and nginx stay on the first machine."
    echo "Logs: journalctl -u smsadmin-worker -f"
    echo "Upgrading later: git pull in this checkout, then run install.sh --worker-only again."
    exit 0
fi

# --- nginx --------------------------------------------------------------------------
say "nginx site: $NGINX_SITE"
have_cert=0
[ -f "$CERT_DIR/fullchain.pem" ] && [ -f "$CERT_DIR/privkey.pem" ] && have_cert=1
tmp=$(mktemp "$NGINX_SITE.XXXXXX")
render_nginx "$tmp" "$have_cert"
put_file "$tmp" "$NGINX_SITE" 0644
ln -sfn "$NGINX_SITE" "$NGINX_ENABLED"
if [ "$have_cert" = 1 ]; then
    note "HTTPS with $CERT_DIR"
else
    note "no certificate in $CERT_DIR yet: HTTP only, for certbot (see below)"
fi
system nginx -t -q
system systemctl enable --quiet nginx
system systemctl reload-or-restart nginx

# --- What is left -------------------------------------------------------------------
base_url=$(public_base_url)
steps=()
steps+=("DNS: point $HOST (A and AAAA records) at this machine.")
if [ "$have_cert" = 0 ]; then
    steps+=("HTTPS: get a certificate, then run this script again to switch HTTPS on:
       certbot certonly --webroot -w $ACME_ROOT -d $HOST --deploy-hook 'systemctl reload nginx'")
fi
steps+=("Settings: edit $ENV_FILE (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER,
       ORG_NAME, TIME_ZONE, SMS_HELP_REPLY), then:
       systemctl restart ${UNITS[*]}")
steps+=("Twilio: in the console, set the number's (or Messaging Service's) incoming message
       webhook, HTTP POST, to:  $base_url/webhooks/twilio/inbound/
       Delivery reports come to $base_url/webhooks/twilio/status/ (the app asks for
       them with each message; leave the service's Delivery Status Callback empty).")
steps+=("First Admin: $MANAGE_BIN ensure_admin   (prints its password once)")
steps+=("Logs: journalctl -u smsadmin-web -u smsadmin-worker -u smsadmin-beat -f
       (nginx: /var/log/nginx/). Health: curl $base_url/healthz")
echo
echo "smsadmin is installed. What is left to do:"
n=1
for step in "${steps[@]}"; do
    printf '  %d. %s\n' "$n" "$step"
    n=$((n + 1))
done
echo "Upgrading later: git pull in this checkout, then run install.sh again."
