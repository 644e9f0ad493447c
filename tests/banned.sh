#!/bin/sh
# Build-time ban of unbounded string functions (STYLE.md): none may appear in our C.
set -u
cd "$(dirname "$0")/.." || exit 2
hits=$(grep -nE '\b(strcpy|strcat|sprintf|vsprintf|gets|stpcpy)[[:space:]]*\(' \
	$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.c' -o -name '*.h') 2>/dev/null |
	grep -vE '\b(snprintf|vsnprintf)\b' || true)
if [ -n "$hits" ]; then
	echo "banned functions used (use str_copy/str_format/snprintf):" >&2
	echo "$hits" >&2
	exit 1
fi
echo "banned functions: none"
