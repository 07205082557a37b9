# The nixos-cloud-deploy action image. The container is itself the *source
# system* of the install: it runs our binary, which runs nixos-anywhere, which
# builds the NixOS closure here with Nix and copies it to the VM over SSH.
#
# Every base image is pinned by digest, not only by tag: a tag can be re-pushed
# (Debian security rebuilds move golang:*-bookworm every few weeks), a digest
# cannot, so the same commit always builds the same image. A release
# (.github/workflows/release.yml) builds this once, pushes it to GHCR and
# points that release's action.yml at the pushed digest, so users pull it
# instead of building it. internal/repotest keeps these rules true.

# ---- builder: the two Go binaries -------------------------------------------

# Go 1.26.8 exactly: go.mod says `go 1.26.8`, and the official image sets
# GOTOOLCHAIN=local, so an older patch would refuse to build instead of
# quietly downloading a toolchain. The digest is the one public repositories
# pin for this tag (found with a code search, not pulled here: no registry
# access when this was written); bump tag and digest together.
FROM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build

# The release passes its tag (v1.2.3); a plain `docker build` says "dev".
ARG VERSION=dev

WORKDIR /src
# Modules first, in their own layer, so a source edit does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .

# CGO_ENABLED=0: a static binary, no libc from the builder leaks into the Nix
# image (which has glibc only inside /nix/store, not at /lib). -trimpath: no
# builder paths in the binary, reproducible across machines. -buildvcs=false:
# .git is not in the build context (.dockerignore), the version comes from -X.
# Both binaries: the action, and the ChatOps bot (`bot serve` can run from
# this image with --entrypoint /usr/local/bin/nixos-cloud-deploy-bot).
ENV CGO_ENABLED=0
RUN set -eu; \
    ldflags="-s -w -X github.com/nixos-cloud-deploy/nixos-cloud-deploy/internal/cli.Version=${VERSION}"; \
    go build -trimpath -buildvcs=false -ldflags "$ldflags" -o /out/nixos-cloud-deploy ./cmd/action; \
    go build -trimpath -buildvcs=false -ldflags "$ldflags" -o /out/nixos-cloud-deploy-bot ./cmd/bot

# ---- runtime: the official Nix image ----------------------------------------

# The official Nix image (built from NixOS/nix docker.nix): nix, bash,
# coreutils, git and openssh in /root/.nix-profile, CA certificates with
# SSL_CERT_FILE set (Go's TLS honours it), root user, build users (nixbld).
# The digest is the one public repositories pin for nixos/nix:2.35.2 (found
# with a code search, not pulled here); bump tag and digest together.
FROM nixos/nix:2.35.2@sha256:7a007c766426c1877758ddc5cb87a965ac131fc78c582ce0083d922d51ae945c

# nix.conf. In the base image /etc/nix/nix.conf may be a symlink into the
# read-only-by-convention store, so it is replaced by a real file that keeps
# the image's settings and adds ours:
#   experimental-features: nixos-anywhere and our rendered config are flakes,
#     and we call `nix build`/`nix copy` (nix-command).
#   sandbox = false: Nix's build sandbox needs mount and user namespaces, which
#     a GitHub container action does not get (no --privileged). Builds here are
#     almost all substitutions from cache.nixos.org anyway.
RUN set -eu; \
    conf="$(cat /etc/nix/nix.conf)"; \
    rm -f /etc/nix/nix.conf; \
    printf '%s\n' "$conf" \
      'experimental-features = nix-command flakes' \
      'sandbox = false' \
      > /etc/nix/nix.conf

# nixos-anywhere from a pinned release, built now so a run downloads nothing
# to start. Same tag as internal/nixos.NixosAnywhereVersion (a test checks).
# `nix build --out-link` rather than `nix profile install`: the image's default
# profile is a nix-env (manifest.nix) profile that `nix profile` refuses, and
# the out-link is a GC root, so the collection below keeps exactly this
# closure and drops the flake sources and nixpkgs used to evaluate it.
# An optional BuildKit secret github_token raises GitHub's API rate limit
# (anonymous: 60 requests an hour per IP) for the github: flake fetches; it
# lives only in this RUN's environment, never in a layer.
ARG NIXOS_ANYWHERE_VERSION=1.13.0
RUN --mount=type=secret,id=github_token set -eu; \
    if [ -s /run/secrets/github_token ]; then \
      NIX_CONFIG="access-tokens = github.com=$(cat /run/secrets/github_token)"; export NIX_CONFIG; \
    fi; \
    nix build --print-build-logs --out-link /opt/nixos-anywhere \
      "github:nix-community/nixos-anywhere/${NIXOS_ANYWHERE_VERSION}"; \
    unset NIX_CONFIG; \
    /opt/nixos-anywhere/bin/nixos-anywhere --help >/dev/null; \
    nix-collect-garbage; \
    rm -rf /root/.cache/nix

# git (Nix fetches git flake inputs with it, and the finalize step's clone
# runs on the VM, but nixos-anywhere calls git on the source side) and an ssh
# client (nixos-anywhere runs the system's ssh, through our ProxyCommand)
# come with the base image; fail the build here, not a deployment later, if a
# new base image ever drops them.
RUN git --version && ssh -V

# The binaries at stable absolute paths: nixos-anywhere runs our binary as its
# ssh ProxyCommand (`nixos-cloud-deploy proxy ...`), so the path it is given
# must not depend on the working directory. The base image's PATH has no
# /usr/local/bin, hence the ENV.
COPY --from=build /out/nixos-cloud-deploy /usr/local/bin/nixos-cloud-deploy
COPY --from=build /out/nixos-cloud-deploy-bot /usr/local/bin/nixos-cloud-deploy-bot
ENV PATH=/usr/local/bin:/opt/nixos-anywhere/bin:${PATH}

LABEL org.opencontainers.image.source="https://github.com/nixos-cloud-deploy/nixos-cloud-deploy" \
      org.opencontainers.image.description="nixos-cloud-deploy: turn a fresh Azure VM into NixOS with nixos-anywhere"

# No USER: GitHub runs container actions as root and bind-mounts the workspace
# (/github/workspace) and $HOME (/github/home) owned by the runner's user; Nix
# without a daemon also needs root to write /nix/store. The base image already
# runs as 0:0.
#
# No WORKDIR: GitHub starts the container with --workdir /github/workspace and
# the binary reads GITHUB_WORKSPACE, so nothing here may depend on the
# directory it starts in. Exec form, absolute path: no shell in between, so
# SIGTERM from a cancelled run reaches the binary and it cancels the running
# stage. The action's inputs arrive as INPUT_* variables, not arguments;
# `CMD []` drops the base image's bash CMD so that no argument is added.
ENTRYPOINT ["/usr/local/bin/nixos-cloud-deploy"]
CMD []
