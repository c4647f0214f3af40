"""The README's screenshots, from real stores, at a laptop's width (1280 px) and a phone's (390 px).

    .venv/bin/python reports/screenshots/take.py --store RUN_DIR [--run RUN_ID] --name NAME
        [--page report|leaderboard] [--section CSS] [--widths 1280,390] [--max-height 2400]

Writes reports/screenshots/NAME.png at the first width and NAME-390.png (etc.) at the others: the
whole page, or the element that --section selects. Needs Chromium, chromedriver and selenium (the
browser tests' setup, `make browser`).
"""

import argparse
import base64
import shutil
import tempfile
from pathlib import Path

from modelbench.reports import write_leaderboard, write_run_report
from modelbench.store import STORE_NAME, Store

HERE = Path(__file__).resolve().parent


def driver(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    flags = ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900")
    for flag in flags:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)


def shoot(browser, page: Path, width: int, out: Path, section: str | None, max_height: int) -> None:
    metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]}
    )
    browser.get(page.as_uri())
    if section:
        box = browser.execute_script(
            "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
            "return [r.left + scrollX, r.top + scrollY, r.width, r.height]",
            section,
        )
        x, y, w, h = box
    else:
        x, y, w = 0, 0, width
        h = browser.execute_script("return document.documentElement.scrollHeight")
    clip = {"x": x, "y": y, "width": w, "height": min(h, max_height), "scale": 1}
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    out.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {out} ({width} px wide page)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="a run folder (with modelbench.sqlite)")
    parser.add_argument("--run", default=None, help="run id (report page); default: the latest")
    parser.add_argument("--page", choices=["report", "leaderboard"], default="report")
    parser.add_argument("--name", required=True)
    parser.add_argument("--section", default=None, help="CSS selector of the element to capture")
    parser.add_argument("--widths", default="1280,390")
    parser.add_argument("--max-height", type=int, default=2400)
    args = parser.parse_args()
    store = Store(args.store / STORE_NAME)
    with tempfile.TemporaryDirectory() as tmp:
        if args.page == "leaderboard":
            page = write_leaderboard(store, Path(tmp) / "leaderboard.html")
        else:
            latest = store.db.execute(
                "SELECT run_id FROM runs WHERE status = 'finished' ORDER BY rowid DESC LIMIT 1"
            ).fetchone()
            run_id = args.run or (latest[0] if latest else None)
            if run_id is None:
                raise SystemExit(f"no finished run in {args.store}")
            page = write_run_report(store, run_id, Path(tmp) / "report.html")
        browser = driver(str(Path(tmp) / "profile"))
        try:
            for i, width in enumerate(int(w) for w in args.widths.split(",")):
                name = args.name if i == 0 else f"{args.name}-{width}"
                shoot(browser, page, width, HERE / f"{name}.png", args.section, args.max_height)
        finally:
            browser.quit()
    store.close()


if __name__ == "__main__":
    main()
