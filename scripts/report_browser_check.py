"""Open a `gram report` page in headless Chromium (Playwright, Debian's chromium) and check what a
reader sees: the page loads with no console error, no page error and no failed request; every
plot is an inline SVG with a non-zero size and its PNG and SVG files exist beside the page; the
summary tables are filled. Optionally saves a screenshot.

Usage: python scripts/report_browser_check.py REPORT_DIR [--expect-plots N] [--screenshot PNG]
Exit status 0 when every check passes; 1 with the failures listed otherwise.
"""
import argparse
import pathlib
import sys

from playwright.sync_api import sync_playwright

from chromium import launch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("report_dir")
    p.add_argument("--expect-plots", type=int, default=0)
    p.add_argument("--screenshot")
    args = p.parse_args()
    page_path = pathlib.Path(args.report_dir).resolve() / "report.html"
    problems = []
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.goto(page_path.as_uri(), wait_until="load")
        figures = page.query_selector_all("figure.plot")
        if len(figures) < max(args.expect_plots, 1):
            problems.append(f"{len(figures)} plots on the page, expected {args.expect_plots}")
        for f in figures:
            name = f.get_attribute("id")
            svg = f.query_selector("svg")
            box = svg.bounding_box() if svg else None
            if not box or box["width"] < 100 or box["height"] < 100:
                problems.append(f"plot {name}: no visible inline SVG ({box})")
            elif len(svg.query_selector_all("text")) < 3:
                problems.append(f"plot {name}: fewer than 3 text labels")
            for ext in ("png", "svg"):
                if not (page_path.parent / f"{name}.{ext}").is_file():
                    problems.append(f"plot {name}: {name}.{ext} missing beside the page")
        cells = page.query_selector_all("table td")
        if len(cells) < 10 or any(not c.inner_text().strip() for c in cells):
            problems.append(f"summary tables: {len(cells)} cells, some empty")
        if args.screenshot:
            page.screenshot(path=args.screenshot, full_page=False)
        browser.close()
    for pr in problems:
        print(f"report check: {pr}")
    print(f"report check: {page_path}: {len(figures)} plots, {'FAILED' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
