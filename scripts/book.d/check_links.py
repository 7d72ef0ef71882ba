"""Checks every relative link and anchor of a built mdBook.

Usage: check_links.py BOOK_DIR

Reads each HTML page under BOOK_DIR (mdBook's output), and for every
`href` that is not an absolute URL: the file it names must exist inside
BOOK_DIR, and its `#fragment`, if any, must be the `id` of an element of
that page. Prints each broken link with the page it is on and exits 1 if
there is any; prints a one-line summary and exits 0 otherwise.
"""

import html.parser
import os
import sys
import urllib.parse

# Pages mdBook writes that are not the book's own (they repeat every
# page, or are templates), and links it writes into its theme.
SKIPPED_PAGES = {"print.html", "404.html", "toc.html"}
ABSOLUTE = ("http:", "https:", "mailto:", "data:", "javascript:")


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif name == "href" and tag == "a":
                self.links.append(value)


def parse(path):
    page = Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    return page


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    root = os.path.realpath(sys.argv[1])
    pages = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".html"):
                path = os.path.join(folder, name)
                pages[path] = parse(path)
    if not pages:
        print(f"check_links: no HTML pages under {root}", file=sys.stderr)
        return 1
    broken = []
    checked = 0
    for path, page in sorted(pages.items()):
        if os.path.basename(path) in SKIPPED_PAGES:
            continue
        for link in page.links:
            if link.startswith(ABSOLUTE) or link.startswith("//"):
                continue
            parts = urllib.parse.urlsplit(link)
            if parts.scheme:
                broken.append((path, link, "an unknown scheme"))
                continue
            target = path
            if parts.path:
                target = os.path.realpath(
                    os.path.join(os.path.dirname(path), urllib.parse.unquote(parts.path))
                )
                if os.path.isdir(target):
                    target = os.path.join(target, "index.html")
            checked += 1
            if not (target == root or target.startswith(root + os.sep)):
                broken.append((path, link, "points out of the book"))
            elif not os.path.isfile(target):
                broken.append((path, link, "no such page"))
            elif parts.fragment:
                ids = pages[target].ids if target in pages else parse(target).ids
                if urllib.parse.unquote(parts.fragment) not in ids:
                    broken.append((path, link, "no such anchor"))
    for path, link, why in broken:
        print(f"{os.path.relpath(path, root)}: {link}: {why}", file=sys.stderr)
    if broken:
        print(f"check_links: {len(broken)} broken link(s) of {checked}", file=sys.stderr)
        return 1
    print(f"check_links: {checked} relative links in {len(pages)} pages, none broken")
    return 0


if __name__ == "__main__":
    sys.exit(main())
