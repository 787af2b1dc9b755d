#!/usr/bin/env bash
# Installs git-gatos and gatosd, their man pages and bash, zsh and fish completions under a
# prefix (default ~/.local), then says what the shell still needs to find them. Idempotent:
# run it again after a pull to update.
#
#   scripts/install.sh [--prefix DIR] [--debug | --bin-dir DIR]
#
#   --prefix DIR   install into DIR/bin, DIR/share/man/man1, DIR/share/{bash-completion,zsh,fish}
#   --debug        build the debug profile instead of release (faster to build, slower to run)
#   --bin-dir DIR  install the git-gatos and gatosd already built in DIR; build nothing
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

prefix="${HOME:?HOME is not set; give --prefix DIR}/.local"
profile=release
bin_dir=
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --debug) profile=debug; shift ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --bin-dir=*) bin_dir=${1#*=}; shift ;;
    -h | --help) sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument '$1' (see scripts/install.sh --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)

if [ -z "$bin_dir" ]; then
  command -v cargo > /dev/null \
    || { echo "install.sh: cargo is missing: install Rust (https://rustup.rs), or pass --bin-dir DIR" >&2; exit 1; }
  flags=(--locked -p git-gatos -p gatosd)
  [ "$profile" = release ] && flags+=(--release)
  echo "building git-gatos and gatosd ($profile; the first build takes a few minutes)..."
  cargo build --manifest-path "$root/Cargo.toml" "${flags[@]}"
  bin_dir="${CARGO_TARGET_DIR:-$root/target}/$profile"
fi
for b in git-gatos gatosd; do
  [ -x "$bin_dir/$b" ] || { echo "install.sh: no $b in $bin_dir" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gatos-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
new=0 updated=0 unchanged=0

# put SRC DEST MODE: copies SRC to DEST through a rename (a running gatosd keeps its binary);
# sets $state to new, updated or unchanged.
put() {
  local src=$1 dest=$2 mode=$3
  mkdir -p "$(dirname "$dest")"
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
    chmod "$mode" "$dest"
    state=unchanged; unchanged=$((unchanged + 1)); return
  fi
  if [ -e "$dest" ]; then state=updated; updated=$((updated + 1)); else state=new; new=$((new + 1)); fi
  cp "$src" "$dest.tmp.$$"
  chmod "$mode" "$dest.tmp.$$"
  mv -f "$dest.tmp.$$" "$dest"
}

echo "installing into $prefix"
for b in git-gatos gatosd; do
  put "$bin_dir/$b" "$prefix/bin/$b" 755
  printf '  %-9s  %s\n' "$state" "bin/$b"
done

# Man pages, from the clap definitions of the binaries just installed (ADR 0032).
mkdir -p "$tmp/man"
"$prefix/bin/git-gatos" generate man "$tmp/man" > /dev/null
"$prefix/bin/gatosd" generate man "$tmp/man" > /dev/null
man1="$prefix/share/man/man1"
pages=0 changed=()
for page in "$tmp"/man/*.1; do
  name=$(basename "$page")
  put "$page" "$man1/$name" 644
  pages=$((pages + 1))
  [ "$state" = unchanged ] || changed+=("$name")
done
# Pages of subcommands that no longer exist.
removed=()
for page in "$man1"/git-gatos.1 "$man1"/git-gatos-*.1 "$man1"/gatosd.1 "$man1"/gatosd-*.1; do
  [ -f "$page" ] || continue
  name=$(basename "$page")
  [ -f "$tmp/man/$name" ] || { rm -f "$page"; removed+=("$name"); }
done
summary="$pages man pages (git-gatos.1, git-gatos-jobs.1, git-gatos-jobs-enqueue.1, ..., gatosd.1)"
if [ ${#changed[@]} -eq 0 ]; then printf '  %-9s  %s\n' unchanged "share/man/man1: $summary"
else printf '  %-9s  %s\n' installed "share/man/man1: $summary; ${#changed[@]} new or updated"; fi
[ ${#removed[@]} -eq 0 ] || printf '  %-9s  %s\n' removed "share/man/man1: ${removed[*]} (no such command any more)"

# Completions, where bash-completion, zsh and fish look under a prefix.
for prog in git-gatos gatosd; do
  for shell in bash zsh fish; do
    case $shell in
      bash) dest="share/bash-completion/completions/$prog" ;;
      zsh) dest="share/zsh/site-functions/_$prog" ;;
      fish) dest="share/fish/vendor_completions.d/$prog.fish" ;;
    esac
    "$prefix/bin/$prog" generate completions "$shell" > "$tmp/completion"
    put "$tmp/completion" "$prefix/$dest" 644
    printf '  %-9s  %s\n' "$state" "$dest"
  done
done
echo "done: $new new, $updated updated, $unchanged unchanged"

# What the shell needs to find them.
todo=()
case ":$PATH:" in
  *":$prefix/bin:"*)
    for b in git-gatos gatosd; do
      found=$(command -v "$b" || true)
      if [ "$found" != "$prefix/bin/$b" ]; then
        echo "warning: $found comes before $prefix/bin/$b on PATH: remove it, or put $prefix/bin first" >&2
      fi
    done ;;
  *) todo+=("export PATH=\"$prefix/bin:\$PATH\"    # so git finds git-gatos for 'git gatos'") ;;
esac
if command -v man > /dev/null; then
  # man-db finds PREFIX/share/man for PREFIX/bin on PATH; MANPATH, when set, replaces that.
  page=$(PATH="$prefix/bin:$PATH" man -w git-gatos 2> /dev/null || true)
  if [ "$page" != "$man1/git-gatos.1" ]; then
    todo+=("export MANPATH=\"$prefix/share/man:\$MANPATH\"    # so 'git gatos --help' (man git-gatos) finds the page")
  fi
else
  echo "note: man is not installed: 'git gatos --help' opens the man page, so it needs man (Debian: apt-get install man-db); 'git gatos -h' and 'git gatos help' work without it"
fi
if command -v zsh > /dev/null && ! zsh -fc 'print -l -- $fpath' 2> /dev/null | grep -qx "$prefix/share/zsh/site-functions"; then
  todo+=("fpath+=(\"$prefix/share/zsh/site-functions\")    # zsh, in ~/.zshrc before compinit")
fi
if command -v fish > /dev/null && ! fish -c "contains -- '$prefix/share/fish/vendor_completions.d' \$fish_complete_path" 2> /dev/null; then
  todo+=("set -gx XDG_DATA_DIRS \"$prefix/share\" \$XDG_DATA_DIRS    # fish, in ~/.config/fish/config.fish")
fi
if [ ${#todo[@]} -gt 0 ]; then
  echo "add to your shell's startup file (~/.bashrc, or the one named), then open a new shell:"
  printf '  %s\n' "${todo[@]}"
fi
