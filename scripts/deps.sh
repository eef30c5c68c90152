# Installs the Debian packages sra-milter's build and tests need, when
# missing. Sourced by scripts/test.sh and scripts/run.sh.
#   need_packages PKG...   apt-get installs whichever are not installed.

need_packages() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Postfix for the system tests, installed the Debian way ("Local only");
# the tests run private instances and never touch the default one.
need_postfix() {
    dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep "install ok installed" >/dev/null && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "postfix postfix/main_mailer_type select Local only" | $sudo debconf-set-selections
    echo "postfix postfix/mailname string localhost" | $sudo debconf-set-selections
    need_packages postfix
}

# rocksdb's bindgen needs libclang; the C++ build needs a compiler.
need_packages libclang-dev clang g++ make pkg-config
