#!/bin/sh
# Put Tandem in this user's application menu (no root needed); run it from the unpacked
# folder, and again after moving the folder.  `--uninstall` takes the entry out again.
set -eu
APP_ID=io.github.tandem.Tandem
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$DATA/applications/$APP_ID.desktop" "$DATA/metainfo/$APP_ID.metainfo.xml"
    find "$DATA/icons/hicolor" -name "$APP_ID.*" -delete 2>/dev/null || true
    echo "Tandem removed from the application menu (your chats and models stay in $DATA/tandem)."
else
    mkdir -p "$DATA/applications" "$DATA/metainfo"
    # The packaged .desktop file says Exec=tandem; point it at this folder instead of PATH.
    sed -e "s|^Exec=.*|Exec=\"$HERE/tandem\"|" -e "s|^TryExec=.*|TryExec=$HERE/tandem|" \
        "$HERE/share/applications/$APP_ID.desktop" > "$DATA/applications/$APP_ID.desktop"
    cp "$HERE/share/metainfo/$APP_ID.metainfo.xml" "$DATA/metainfo/"
    (cd "$HERE/share" && find icons -name "$APP_ID.*" | while read -r icon; do
        mkdir -p "$DATA/$(dirname "$icon")" && cp "$icon" "$DATA/$icon"
    done)
    echo "Tandem added to the application menu (runs $HERE/tandem)."
fi
if command -v update-desktop-database >/dev/null 2>&1; then update-desktop-database -q "$DATA/applications" || true; fi
if command -v gtk-update-icon-cache >/dev/null 2>&1; then gtk-update-icon-cache -q -t "$DATA/icons/hicolor" 2>/dev/null || true; fi
