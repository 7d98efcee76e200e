#!/usr/bin/env bash
# The pipeline's signing and verification (.gitlab-ci.yml: sign, .deploy),
# run here against a registry on this machine, with a key pair in place of
# keyless signing (Fulcio and Rekor need the internet):
#
#   bash scripts/sign-local.sh IMAGE     # IMAGE: a local image, e.g. localhost/users:kube-v1
#
#   1. a registry (go-containerregistry's) on 127.0.0.1, the image pushed
#      to it, and the chart packaged and pushed as an OCI artifact (helm);
#   2. cosign sign (--recursive) of the image by digest, cosign attest of
#      an SBOM (CycloneDX, from the binary's build information) and of an
#      SLSA provenance statement, cosign sign of the chart by digest;
#   3. what deploy does: cosign verify of both digests, and
#      verify-attestation of the SBOM;
#   4. what deploy must refuse: an unsigned digest, and a signature checked
#      against another key. Either passing fails the script.
#
# Needs the container engine's docker CLI (containers.sh env) with IMAGE in
# it, and Go; cosign, the registry, crane, cyclonedx-gomod and Helm are
# built from the Go module proxy once into ~/.cache/users-ci (cosign takes
# 10-40 min cold on 2 cores, with other builds running). docs/answers.md
# has a run's output.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=auto
image=${1:?usage: sign-local.sh IMAGE}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/users-ci
COSIGN_VERSION=v2.6.5 GGCR_VERSION=v0.22.1 CYCLONEDX_GOMOD_VERSION=v1.10.0
# The Helm the pipeline pins, built as .ci/kube builds it (same place, same
# version stamp) if it is not there yet.
helm_version=$(sed -n 's/^ *HELM_VERSION: *//p' .gitlab-ci.yml | head -n 1)
HELM=${HELM:-$cache/helm-$helm_version/helm}
if [ ! -x "$HELM" ]; then
	GOBIN=$(dirname "$HELM") GOFLAGS=-mod=mod go install -trimpath \
		-ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" "helm.sh/helm/v3/cmd/helm@$helm_version"
fi

tool() { # tool BIN MODULE/CMD@VERSION...: go install into BIN's folder unless BIN is there
	local bin=$1
	shift
	[ -x "$bin" ] || GOBIN=$(dirname "$bin") GOFLAGS=-mod=mod go install -trimpath -ldflags "-s -w" "$@"
}
tool "$cache/cosign-$COSIGN_VERSION/cosign" "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION"
tool "$cache/ggcr-$GGCR_VERSION/crane" "github.com/google/go-containerregistry/cmd/registry@$GGCR_VERSION" \
	"github.com/google/go-containerregistry/cmd/crane@$GGCR_VERSION"
tool "$cache/cyclonedx-gomod-$CYCLONEDX_GOMOD_VERSION/cyclonedx-gomod" "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$CYCLONEDX_GOMOD_VERSION"
cosign=$cache/cosign-$COSIGN_VERSION/cosign
crane=$cache/ggcr-$GGCR_VERSION/crane

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$cache/ggcr-$GGCR_VERSION/registry" -port "$port" >"$work/registry.log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null; rm -rf "$work"' EXIT
reg=127.0.0.1:$port
for _ in $(seq 50); do curl -fsS "http://$reg/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
# No TLS on loopback; no transparency log offline (keyless signing in the
# pipeline always writes one, and its verify requires it).
insecure=(--allow-insecure-registry --allow-http-registry)
nolog=(--tlog-upload=false)
verify_nolog=(--insecure-ignore-tlog=true)
export COSIGN_PASSWORD="" COSIGN_YES=true
# q CMD...: run CMD quietly; its output only if it fails (cosign warns
# about the transparency log and the TUF root it cannot reach offline).
q() { "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }; }

echo "== 1. registry $reg: image $image and the chart"
docker save "$image" -o "$work/image.tar"
q "$crane" push --insecure "$work/image.tar" "$reg/users:local"
digest=$("$crane" digest --insecure "$reg/users:local")
ref=$reg/users@$digest
"$HELM" package chart --destination "$work" >/dev/null
chart=$(ls "$work"/users-*.tgz)
chart_digest=$("$HELM" push "$chart" "oci://$reg/charts" --plain-http 2>&1 | sed -n 's/^Digest: *\(sha256:[0-9a-f]*\).*/\1/p')
chart_ref=$reg/charts/users@$chart_digest
echo "image $ref"
echo "chart $chart_ref"

echo "== 2. sign, attest"
(cd "$work" && "$cosign" generate-key-pair >/dev/null 2>&1)
q "$cosign" sign "${insecure[@]}" "${nolog[@]}" --key "$work/cosign.key" --recursive "$ref"
# The SBOM from the binary's own build information (modules and versions,
# the Go release), as BuildKit's scanner reads it in the pipeline.
id=$(docker create --entrypoint /none "$image")
docker cp "$id:/users" "$work/users" # the Dockerfile's COPY --from=build /out/users /users
docker rm "$id" >/dev/null
"$cache/cyclonedx-gomod-$CYCLONEDX_GOMOD_VERSION/cyclonedx-gomod" bin -json -output "$work/sbom.cdx.json" "$work/users" 2>/dev/null
echo "sbom: $(grep -c '"bom-ref"' "$work/sbom.cdx.json") components, $(go version "$work/users" | cut -d' ' -f2-)"
q "$cosign" attest "${insecure[@]}" "${nolog[@]}" --key "$work/cosign.key" --type cyclonedx --predicate "$work/sbom.cdx.json" "$ref"
cat >"$work/provenance.json" <<EOF
{"buildDefinition": {"buildType": "https://mobyproject.org/buildkit@v1",
  "externalParameters": {"source": "$(git remote get-url origin 2>/dev/null || echo local)", "revision": "$(git rev-parse HEAD)"},
  "resolvedDependencies": [{"uri": "git+local", "digest": {"gitCommit": "$(git rev-parse HEAD)"}}]},
 "runDetails": {"builder": {"id": "scripts/sign-local.sh"}}}
EOF
q "$cosign" attest "${insecure[@]}" "${nolog[@]}" --key "$work/cosign.key" --type slsaprovenance1 --predicate "$work/provenance.json" "$ref"
q "$cosign" sign "${insecure[@]}" "${nolog[@]}" --key "$work/cosign.key" "$chart_ref"
"$crane" ls --insecure "$reg/users"

echo "== 3. verify, as deploy does"
q "$cosign" verify "${insecure[@]}" "${verify_nolog[@]}" --key "$work/cosign.pub" "$ref"
echo "image: signature verified"
q "$cosign" verify "${insecure[@]}" "${verify_nolog[@]}" --key "$work/cosign.pub" "$chart_ref"
echo "chart: signature verified"
q "$cosign" verify-attestation "${insecure[@]}" "${verify_nolog[@]}" --key "$work/cosign.pub" --type cyclonedx "$ref"
echo "image: SBOM attestation verified"
q "$cosign" verify-attestation "${insecure[@]}" "${verify_nolog[@]}" --key "$work/cosign.pub" --type slsaprovenance1 "$ref"
echo "image: provenance attestation verified"

echo "== 4. refused, as deploy must"
q "$crane" mutate --insecure --label unsigned=true "$reg/users:local" -t "$reg/users:unsigned"
unsigned=$reg/users@$("$crane" digest --insecure "$reg/users:unsigned")
if "$cosign" verify "${insecure[@]}" "${verify_nolog[@]}" --key "$work/cosign.pub" "$unsigned" >"$work/out" 2>&1; then
	echo "FAIL: an unsigned image verified" >&2
	exit 1
fi
echo "unsigned image: refused ($(grep -o 'no signatures found' "$work/out" | head -n 1))"
mkdir "$work/other" && (cd "$work/other" && "$cosign" generate-key-pair >/dev/null 2>&1)
if "$cosign" verify "${insecure[@]}" "${verify_nolog[@]}" --key "$work/other/cosign.pub" "$ref" >"$work/out" 2>&1; then
	echo "FAIL: the image verified against another key" >&2
	exit 1
fi
echo "another signer's key: refused ($(grep -o 'no matching signatures.*' "$work/out" | head -n 1))"
echo "sign-local: PASS"
