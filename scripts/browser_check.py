"""Drive gram-gpu's browser page in headless Chromium (Playwright, the system chromium with WebGPU
enabled): load it from a local server with ?auto=1, wait for the run, and print
`browser: OK adapter=<name> pairs=<n> max_rel_err=<e>` as the last line — or fail (exit 1).
With --files A.npy M1.npy …, the page is loaded again and those files go through its file
input (as a user would choose or drop them) and are scored the same way.
Usage: python scripts/browser_check.py URL [--files A.npy M1.npy …] [--screenshot PNG]
"""
import argparse
import json
import sys

from playwright.sync_api import sync_playwright

from chromium import launch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--screenshot")
    p.add_argument("--timeout-s", type=float, default=300)
    p.add_argument("--files", nargs="*", default=[])
    args = p.parse_args()
    errors = []
    finished = "['done', 'error', 'mismatch'].includes(document.body.dataset.state)"
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.on("console", lambda m: m.type == "error" and errors.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(args.url, wait_until="load")
        page.wait_for_function(finished, timeout=args.timeout_s * 1000)
        state = page.evaluate("document.body.dataset.state")
        result = json.loads(page.inner_text("#result") or "{}")
        if args.screenshot:
            page.screenshot(path=args.screenshot)
        if args.files:
            page.goto(args.url.split("?")[0], wait_until="load")
            page.wait_for_function("document.body.dataset.state === 'ready'")
            page.set_input_files("#files", args.files)
            page.wait_for_function("!document.getElementById('runfiles').disabled")
            page.click("#runfiles")
            page.wait_for_function(finished, timeout=args.timeout_s * 1000)
            files_state = page.evaluate("document.body.dataset.state")
            files_result = json.loads(page.inner_text("#result") or "{}")
            print(f"browser: files {' '.join(args.files)}: state={files_state} result={json.dumps(files_result)}")
            if files_state != "done":
                errors.append(f"files: {files_result.get('error', files_state)}")
        browser.close()
    for e in errors:
        print(f"browser: {e}")
    print(f"browser: state={state} result={json.dumps(result)}")
    if state != "done" or errors:
        print(f"browser: FAILED ({result.get('error', state)})")
        return 1
    print(f"browser: OK adapter={result['adapter']} pairs={result['pairs']} max_rel_err={result['max_rel_err']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
