#!/usr/bin/env bash
# `make run`: the proxy on its embedded defaults. SQLite under ./data, in-memory event bus, and a development
# MANAGEMENT_TOKEN generated once into ./data/dev-management-token when none is set.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p data
token_file=data/dev-management-token
if [ -z "${MANAGEMENT_TOKEN:-}" ]; then
  if [ ! -s "$token_file" ]; then
    (umask 077; head -c 32 /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_' > "$token_file")
    echo "Generated a development MANAGEMENT_TOKEN (shown once, kept in $token_file):"
    echo "  $(cat "$token_file")"
  fi
  MANAGEMENT_TOKEN=$(cat "$token_file")
fi
export MANAGEMENT_TOKEN
export DATABASE_PATH=${DATABASE_PATH:-./data/llm-proxy.db}
export LLM_PROXY_EVENT_BUS=${LLM_PROXY_EVENT_BUS:-in-memory}
export AUDIT_LOG_FILE=${AUDIT_LOG_FILE:-./data/audit.log}
export LOG_FORMAT=${LOG_FORMAT:-text}
export LISTEN_ADDR=${LISTEN_ADDR:-127.0.0.1:8080}
port=${LISTEN_ADDR##*:}
cat <<TXT
Starting llm-proxy on ${LISTEN_ADDR}. In another shell:
  export MANAGEMENT_TOKEN=\$(cat $token_file)   # or the one you set
  # 1. a project holding your real provider key
  curl -s -X POST localhost:${port}/manage/projects -H "Authorization: Bearer \$MANAGEMENT_TOKEN" \\
       -H 'Content-Type: application/json' -d '{"name":"demo","api_key":"sk-your-openai-key"}'
  # 2. a withering token for it (60 minutes, 100 requests); use the project's "id" from step 1
  curl -s -X POST localhost:${port}/manage/tokens -H "Authorization: Bearer \$MANAGEMENT_TOKEN" \\
       -H 'Content-Type: application/json' -d '{"project_id":"<id>","duration_minutes":60,"max_requests":100}'
  # 3. use it like an OpenAI key
  curl -s localhost:${port}/v1/chat/completions -H "Authorization: Bearer <token>" \\
       -H 'Content-Type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
TXT
exec cargo run --quiet -p llm-proxy --bin llm-proxy -- server
