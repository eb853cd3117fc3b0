#!/usr/bin/env bash
# Runs gsim (the Google simulator) and mailgate together, so anyone can click through the whole
# "Connect Gmail with Google OAuth" flow without a Google account. Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p gsim -p mailgate
bin="${CARGO_TARGET_DIR:-target}/release"
data="${MAILGATE_DATA_DIR:-./mailgate-data}"
state="$data/gsim"
mkdir -p "$state"

"$bin/gsim" serve --state-dir "$state" > "$state/endpoints.json" &
gsim_pid=$!
trap 'kill $gsim_pid 2>/dev/null || true' EXIT
# gsim prints its endpoints once every listener is ready.
until [ -s "$state/endpoints.json" ]; do
  kill -0 $gsim_pid 2>/dev/null || { echo "gsim did not start" >&2; exit 1; }
  sleep 0.2
done
endpoint() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$state/endpoints.json" "$1"; }
google="$(endpoint http)"

export MAILGATE_DATA_DIR="$data"
export MAILGATE_GOOGLE_AUTH_URL="$google/o/oauth2/v2/auth"
export MAILGATE_GOOGLE_TOKEN_URL="$google/token"
export MAILGATE_GOOGLE_REVOKE_URL="$google/revoke"
export MAILGATE_GOOGLE_CERTS_URL="$google/oauth2/v3/certs"
export MAILGATE_GMAIL_SMTP="$(endpoint smtp_starttls)"
export MAILGATE_GMAIL_IMAP="$(endpoint imap_tls)"
export MAILGATE_EXTRA_CA_FILE="$(endpoint ca_cert)"

cat <<INFO

  The simulated Google is at $google. In mailgate, use:
    Client ID      104346170925-gsimdemo0mailgate0local0000000000.apps.googleusercontent.com
    Client Secret  GOCSPX-gsim-demo-secret-not-a-real-one
    Username       alice@gmail.com   (a test user of the simulated app: the flow succeeds)
                   bob@example.com   (not a test user: Google's "Error 403: access_denied")

INFO
"$bin/mailgate" serve
