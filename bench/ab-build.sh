# Sourced by bench/replay-ab.sh and bench/serve-ab.sh: `ab_binary SHA` builds tollguard at commit
# SHA once into target/ab/SHA (a git worktree and its own target folder; the first build takes
# a few minutes) and prints the binary's path. Needs ROOT (the checkout).
ab_binary() {
    local ab="$ROOT/target/ab/$1"
    if [[ ! -x "$ab/target/release/tollguard" ]]; then
        mkdir -p "$ROOT/target/ab"
        [[ -d "$ab/src" ]] || git -C "$ROOT" worktree add -f --detach "$ab/src" "$1" >/dev/null
        (cd "$ab/src" && CARGO_TARGET_DIR="$ab/target" cargo build --release -q -p tollguard) >&2
    fi
    echo "$ab/target/release/tollguard"
}
