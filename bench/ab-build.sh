# Sourced by bench/replay-ab.sh and bench/serve-ab.sh: `ab_binary SHA [PROFILE]` builds tollguard
# at commit SHA once into target/ab/SHA (a git worktree and its own target folder; the first
# build takes a few minutes) and prints the binary's path. Needs ROOT (the checkout).
# PROFILE `release` (the default) or `dist`: Cargo.toml's `dist` (fat LTO, one codegen unit),
# given to any commit, older ones without that profile too, as overrides of `release`.
ab_binary() {
    local profile="${2:-release}" ab="$ROOT/target/ab/$1"
    local env=()
    if [[ "$profile" == dist ]]; then
        ab="$ab-dist"
        env=(CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1)
    fi
    if [[ ! -x "$ab/target/release/tollguard" ]]; then
        mkdir -p "$ROOT/target/ab"
        [[ -d "$ab/src" ]] || git -C "$ROOT" worktree add -f --detach "$ab/src" "$1" >/dev/null
        (cd "$ab/src" && env "${env[@]}" CARGO_TARGET_DIR="$ab/target" cargo build --release -q -p tollguard) >&2
    fi
    echo "$ab/target/release/tollguard"
}
