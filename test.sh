#!/usr/bin/env bash
# The project's test command. On a fresh machine it first installs what the
# integration tests start as real servers on 127.0.0.1 (into .tools/, ignored by git):
#   kinesalite  (npm)             a Kinesis-API server
#   dynalite    (npm)             a DynamoDB-API server (the shared limits table)
#   versitygw   (Go module proxy) an S3-API server
#   toxiproxy   (Go module proxy) a TCP fault proxy, for the fault scenarios
#   chromium    (Debian package)  the headless browser the report's page is tested in
# DuckDB comes in as a Go module (cgo) and needs gcc, which the Go image has.
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)
mkdir -p .tools/bin .tools/node

if [ ! -f .tools/node/node_modules/kinesalite/package.json ]; then
  echo "test.sh: installing kinesalite@3.3.3 (npm) into .tools/node" >&2
  npm install --silent --no-audit --no-fund --prefix .tools/node kinesalite@3.3.3 >&2
fi
# dynalite (npm): a DynamoDB-API server for the shared limits store's tests.
if [ ! -f .tools/node/node_modules/dynalite/package.json ]; then
  echo "test.sh: installing dynalite@4.0.0 (npm) into .tools/node" >&2
  npm install --silent --no-audit --no-fund --prefix .tools/node dynalite@4.0.0 >&2
fi

if [ ! -x .tools/bin/versitygw ]; then
  echo "test.sh: building versitygw (an S3-API server) into .tools/bin; about a minute" >&2
  GOBIN="$root/.tools/bin" go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 >&2
fi

if [ ! -x .tools/bin/toxiproxy-server ]; then
  echo "test.sh: building toxiproxy-server (a TCP fault proxy) into .tools/bin" >&2
  GOBIN="$root/.tools/bin" go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0 >&2
  mv "$root/.tools/bin/server" "$root/.tools/bin/toxiproxy-server"
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "test.sh: installing chromium (Debian) for the report's browser test" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
fi

# ---- Deployment (infra/cdk): the Lambda runtime interface emulator and the CDK CLI ----
#   aws-lambda-rie (Go module proxy)  runs each cmd/lambda bootstrap through the real Lambda Runtime API
#   aws-cdk        (npm)              the CDK CLI; `cdk synth` of infra/cdk runs below
if [ ! -x .tools/bin/aws-lambda-rie ]; then
  echo "test.sh: building aws-lambda-rie (the Lambda runtime interface emulator) into .tools/bin" >&2
  GOBIN="$root/.tools/bin" go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d >&2
fi
if [ ! -x .tools/node/node_modules/.bin/cdk ]; then
  echo "test.sh: installing the CDK CLI aws-cdk@2.1149.0 (npm) into .tools/node" >&2
  npm install --silent --no-audit --no-fund --prefix .tools/node aws-cdk@2.1149.0 >&2
fi

# --- the OpenAPI client generator (Go module proxy) ---------------------------
# invoker/apiclient's TestGeneratedClientIsCurrent regenerates the client with
# `go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2`;
# fetch and build it once here so the test does not pay for it.
go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 --version >/dev/null
# -------------------------------------------------------------------------------

export PATH="$root/.tools/bin:$PATH"
export METER_NODE_MODULES="$root/.tools/node/node_modules"
# Tests that need kinesalite, dynalite or versitygw fail instead of skipping when this is set.
export METER_REQUIRE_SERVERS=1

go vet ./...
go test -count=1 -timeout 20m "$@" ./...

# ---- Deployment (infra/cdk) ----
# infra/cdk is its own Go module: CDK's Go bindings are large and take minutes to
# compile, and nothing in the product imports them, so `go build ./...` of the
# main module stays light. Its tests synthesize the stack in-process and check
# the template; then the CDK CLI synthesizes the app as `cdk deploy` would.
(
  cd infra/cdk
  go vet ./...
  go test -count=1 -timeout 20m ./...
  cdkout=$(mktemp -d)
  trap 'rm -rf "$cdkout" "$cdkout-functions"' EXIT
  CDK_DISABLE_VERSION_CHECK=1 "$root/.tools/node/node_modules/.bin/cdk" synth --quiet --no-notices \
    -c meter:config=meter.example.json -o "$cdkout" >&2
  test -s "$cdkout/Meter.template.json"
  echo "test.sh: cdk synth wrote $(wc -c <"$cdkout/Meter.template.json") bytes of template" >&2
)

# Short fuzz runs of the parsers that take hostile input: 20,000 inputs each, a
# count rather than a duration, because Go 1.26's fuzz coordinator can report a
# spurious "context deadline exceeded" when a duration ends mid-input
# (golang/go#75804). METER_FUZZTIME=10m (or 5000000x) makes a long run. A failing
# input is written under the package's testdata/fuzz/ and replays in every later
# go test.
for target in "FuzzParseEvent ./schemas" "FuzzParse ./aggregator/pricing" "FuzzTenantsFile ./invoker/tenants" \
  "FuzzCloudTrailRecord ./reconcile" "FuzzRequestBodies ./invoker" "FuzzModelAnswers ./invoker"; do
  set -- $target
  go test -run '^$' -fuzz "^$1\$" -fuzztime "${METER_FUZZTIME:-20000x}" "$2"
done

# --- witnesses (invocation logs and the bill): the invocation log reader takes
# objects from outside meter, so it gets the same short fuzz run.
go test -run '^$' -fuzz '^FuzzInvocationLog$' -fuzztime "${METER_FUZZTIME:-20000x}" ./reconcile
