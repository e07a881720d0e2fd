"""Headless Chromium for the page checks: Debian's chromium (or $CHROMIUM) driven by Playwright,
with WebGPU enabled and no background network traffic."""
import os

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan",
        "--disable-background-networking", "--disable-component-update"]


def launch(playwright):
    """A headless Chromium browser from a `sync_playwright()` context."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
