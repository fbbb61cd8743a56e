#!/usr/bin/env bash
# kafka-init: the one-shot service of compose.yaml that gives the vault its
# Kafka principal. It runs on every `docker compose up`, after the broker is
# healthy and before vaultd starts, as root in the apache/kafka image, inside
# the kafka container's network namespace (network_mode: service:kafka).
#
# 1. The first time, it generates the vault's password (256 random bits, hex)
#    into the kafka-credentials volume: $CREDENTIALS_DIR/tenantvault.password,
#    0400 and owned by uid 65532 (distroless "nonroot", the user vaultd runs
#    as). Later runs reuse it; nothing secret is in the repository.
# 2. It sets the SCRAM-SHA-256 and SCRAM-SHA-512 credentials of user
#    tenantvault to that password (an upsert: running again is harmless),
#    through the broker's PLAINTEXT listener on 127.0.0.1:9091, where the
#    client is User:ANONYMOUS, a super user. Only processes in the kafka
#    container's network namespace reach that listener.
set -euo pipefail

credentials_dir=${CREDENTIALS_DIR:-/kafka-credentials}
user=${VAULT_KAFKA_USER:-tenantvault}
bootstrap=${BOOTSTRAP_SERVER:-127.0.0.1:9091}
vault_uid=65532
password_file=$credentials_dir/$user.password

log() { echo "kafka-init: $*" >&2; }

umask 077
if [[ ! -s $password_file ]]; then
  tmp=$(mktemp "$credentials_dir/.$user.password.XXXXXX")
  head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n' >"$tmp"
  if [[ ! $(cat "$tmp") =~ ^[0-9a-f]{64}$ ]]; then
    rm -f "$tmp"
    log "could not generate a password (head/od/tr)"
    exit 1
  fi
  mv -f "$tmp" "$password_file"
  log "generated the Kafka password of $user in $password_file"
fi
chmod 0755 "$credentials_dir"
chown "$vault_uid:$vault_uid" "$password_file"
chmod 0400 "$password_file"

password=$(tr -d '\r\n' <"$password_file")
# Kept to characters that need no quoting in a properties file or in
# kafka-configs.sh's credential syntax; vaultd wants at least 16. A generated
# password is 64 hex digits.
if [[ ! $password =~ ^[A-Za-z0-9._~-]{16,}$ ]]; then
  log "$password_file must hold at least 16 characters of [A-Za-z0-9._~-]"
  exit 1
fi

# The password goes to kafka-configs.sh in a file (--add-config-file, a
# properties file: MECHANISM=password=...), not on its command line, which
# the host's ps would show.
config_file=$(mktemp /tmp/scram.XXXXXX)
trap 'rm -f "$config_file"' EXIT

# One mechanism per request: a KRaft controller refuses an
# AlterUserScramCredentials request that names the same user twice
# ("A user credential cannot be altered twice in the same request").
for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
  printf '%s=password=%s\n' "$mechanism" "$password" >"$config_file"
  for ((attempt = 1; ; attempt++)); do
    if /opt/kafka/bin/kafka-configs.sh --bootstrap-server "$bootstrap" \
      --alter --entity-type users --entity-name "$user" \
      --add-config-file "$config_file"; then
      break
    fi
    if ((attempt >= 30)); then
      log "could not set the $mechanism credential of $user through $bootstrap"
      exit 1
    fi
    log "retrying in 2s ($attempt/30)"
    sleep 2
  done
done
log "SCRAM-SHA-256 and SCRAM-SHA-512 credentials of User:$user are set"
