#!/usr/bin/env bash
# Onboards a team in a deployed meter stack, in one command:
#
#   infra/team-add.sh --team search --cost-center CC-100 --models 'anthropic.*' [--rps 20] [--stack Meter]
#
# It reads the stack's tenants file from S3 (output TenantsUri), adds the team
# with `meter team add` (every flag but --stack is passed to it), writes the
# file back only if nobody changed it meanwhile (If-Match on its ETag; the
# first team creates it with If-None-Match), makes the invoker functions start
# fresh instances so they read it, and prints the team's new API key, once,
# alone on the last line. Nothing prints the key if the upload failed.
#
# Needs: the AWS CLI v2, a 2025 or later release (put-object --if-match; credentials of a role in the stack's tenant_admins,
# the only principals the bucket lets write config/), and the meter binary on
# PATH (go build -o bin/meter ./cmd/meter) or in $METER.
set -euo pipefail
stack=Meter
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stack) stack=$2; shift 2 ;;
    --stack=*) stack=${1#--stack=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
meter=${METER:-meter}
command -v "$meter" >/dev/null || { echo "team-add: no meter binary (set METER or put it on PATH)" >&2; exit 2; }
command -v aws >/dev/null || { echo "team-add: the AWS CLI v2 is required" >&2; exit 2; }

output() {
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
tenants=$(output TenantsUri)
case "$tenants" in s3://*/*) ;; *) echo "team-add: stack $stack has no TenantsUri output ($tenants)" >&2; exit 2 ;; esac
bucket=${tenants#s3://}; bucket=${bucket%%/*}
key=${tenants#s3://$bucket/}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
file=$tmp/tenants.yaml
etag=""
if aws s3api head-object --bucket "$bucket" --key "$key" >/dev/null 2>&1; then
  etag=$(aws s3api get-object --bucket "$bucket" --key "$key" "$file" --query ETag --output text)
fi

# meter team add prints the plaintext key alone on its last line of stdout.
"$meter" team add --tenants "$file" "${args[@]}" >"$tmp/out"
newkey=$(tail -n 1 "$tmp/out")
head -n -1 "$tmp/out" >&2

if [ -n "$etag" ]; then
  aws s3api put-object --bucket "$bucket" --key "$key" --body "$file" --if-match "$etag" >/dev/null ||
    { echo "team-add: the tenants file changed while this ran; nothing was written, run it again" >&2; exit 1; }
else
  aws s3api put-object --bucket "$bucket" --key "$key" --body "$file" --if-none-match '*' >/dev/null ||
    { echo "team-add: the tenants file appeared while this ran; nothing was written, run it again" >&2; exit 1; }
fi

# The invoker reads the tenants file at cold start: a configuration update
# makes Lambda serve the next calls from new instances, which read it.
for out in InvokerFunction InvokerStreamFunction; do
  fn=$(output "$out")
  aws lambda update-function-configuration --function-name "$fn" \
    --description "meter invoker; tenants file updated $(date -u +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
done
echo "team-add: team added to $tenants; the invoker reads it from its next cold start (seconds)" >&2
echo "$newkey"
