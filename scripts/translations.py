"""Add new messages to the Russian catalogs: `make translations`.

For the core and every installed plugin (their register_translations
folders), and for click's own texts (Usage, Options, its errors), which the
core's catalog translates: finds every message the way pybabel does and adds
the ones no catalog has yet, untranslated, to <package>.po. Translate them,
then `make test` checks that none is left (tests/test_translations.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import click

from hub import catalogs, i18n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--language", default="ru", choices=[lang for lang in i18n.LANGUAGES if lang != "en"])
    args = parser.parse_args()
    for folder in i18n.directories():
        added, total = catalogs.update(folder, args.language, folder.parent.name)
        print(f"{folder}: {added} new of {total}")
    added, total = catalogs.update_from(Path(click.__file__).parent, i18n.TRANSLATIONS, args.language, "click")
    print(f"click: {added} new of {total}")
    missing = sum(len(catalogs.untranslated(folder, args.language)) for folder in i18n.directories())
    print(f"untranslated: {missing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
