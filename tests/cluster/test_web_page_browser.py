"""The page at ``/`` in a real browser: headless Debian Chromium driven by playwright-core (npm).

Given a 3-node cluster, when the page on n1 uploads a file through tus, waits for it to be ready,
plays it with hls.js, and switches rendition, then playback advances with no error, the switched
rendition's segments arrive, and the segments of that one playback were served by at least two
nodes (the page spreads segment requests over the live members; each node counts what it served).

Needs ``chromium`` (``make system``) and ``web/node_modules`` (``make web``: hls.js,
tus-js-client, playwright-core).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

import media
from conftest import TEST_LADDER

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
PLAYWRIGHT = REPO / "web" / "node_modules" / "playwright-core"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--autoplay-policy=no-user-gesture-required"]


def driver_script(timeout_ms: int, body: str) -> str:
    """A playwright-core script: launch chromium, open ``PAGE_URL`` (the page's console and errors
    kept in ``out.console``), run ``body`` (JS with ``page``, ``out``, ``step`` and the timeout ``T``
    in scope), then close the browser and print ``out`` as one JSON line (``out.failure`` on an
    exception)."""
    return (r"""
const { chromium } = require(process.env.PLAYWRIGHT);
const T = %d;
const out = { steps: [], console: [] };
const step = (s) => out.steps.push(s);

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, headless: true,
    args: JSON.parse(process.env.FLAGS) });
  try {
    const page = await browser.newPage();
    page.on("console", (m) => out.console.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => out.console.push(`pageerror: ${e.message}`));
    await page.goto(process.env.PAGE_URL);
""" % timeout_ms) + body + r"""
  } catch (e) {
    out.failure = String(e && e.stack || e);
  } finally {
    await browser.close();
    console.log(JSON.stringify(out));
  }
})();
"""


def need_browser():
    assert Path(CHROMIUM).exists(), "chromium is missing: `make system` (apt-get install chromium)"
    assert (PLAYWRIGHT / "package.json").exists(), "web/node_modules is missing: `make web`"


def run_driver(tmp_path: Path, script: str, page_url: str, **env_extra: str) -> tuple[dict, str]:
    """Runs ``script`` with node against ``page_url``; returns its ``out`` and a short JSON of it
    (without the long ``served`` list) for assertion messages, having checked it did not fail."""
    driver = tmp_path / "drive.cjs"
    driver.write_text(script)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PLAYWRIGHT": str(PLAYWRIGHT),
           "CHROMIUM": CHROMIUM, "FLAGS": json.dumps(CHROMIUM_FLAGS),
           "TMPDIR": str(tmp_path),  # playwright puts the throwaway profile (--user-data-dir) here
           "PAGE_URL": page_url, **env_extra}
    p = subprocess.run(["node", str(driver)], env=env, capture_output=True, text=True, timeout=240)
    assert p.stdout.strip(), p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    context = json.dumps({k: v for k, v in out.items() if k != "served"}, indent=1)[-4000:]
    assert "failure" not in out, context
    return out, context


DRIVER = driver_script(60000, r"""
    const { FILE, TOKEN } = { FILE: process.env.UPLOAD_FILE, TOKEN: process.env.TOKEN };
    out.mse_h264 = await page.evaluate(() =>
      window.MediaSource && MediaSource.isTypeSupported('video/mp4; codecs="avc1.4d401e,mp4a.40.2"'));
    out.problems = await page.evaluate(() => document.querySelector("#problems").textContent);
    step("loaded");

    // upload through tus with the token typed into the page
    await page.fill("#token", TOKEN);
    await page.setInputFiles("#file", FILE);
    await page.click("#upload");
    await page.waitForFunction(() => /^uploaded: /.test(document.querySelector("#upload-status").textContent),
      null, { timeout: T });
    const vid = (await page.textContent("#upload-status")).replace("uploaded: ", "").trim();
    out.vid = vid;
    out.progress = await page.evaluate(() => document.querySelector("#progress").value);
    out.stored_token = await page.evaluate(() => localStorage.getItem("shoal.token"));
    step("uploaded");

    // the list shows it, live, until it is ready; then play it
    const play = `tr[data-id="${vid}"] button.play`;
    await page.waitForSelector(play, { timeout: 120000 });
    step("ready");
    // its poster shows in the list (a decoded JPEG) and on the player
    const thumb = `tr[data-id="${vid}"] img.poster`;
    await page.waitForFunction((sel) => { const i = document.querySelector(sel);
      return i && i.complete && i.naturalWidth > 0; }, thumb, { timeout: T });
    out.poster_size = await page.evaluate((sel) => { const i = document.querySelector(sel);
      return [i.naturalWidth, i.naturalHeight]; }, thumb);
    await page.click(play);
    out.video_poster = await page.evaluate(() => document.querySelector("#video").getAttribute("poster"));
    await page.waitForFunction(() => document.querySelector("#video").currentTime > 3, null, { timeout: T });
    out.time_before_switch = await page.evaluate(() => document.querySelector("#video").currentTime);
    step("played");

    // switch rendition to one that is not playing now
    const levels = await page.evaluate(() => window.shoal.hls.levels.length);
    const current = await page.evaluate(() => window.shoal.hls.currentLevel);
    const target = current === 0 ? levels - 1 : 0;
    out.levels = levels;
    out.target = target;
    await page.selectOption("#rendition", String(target));
    await page.waitForFunction((t) => window.shoal.levelSwitches.includes(t)
      && window.shoal.served.some((s) => s.level === t), target, { timeout: T });
    const t0 = await page.evaluate(() => document.querySelector("#video").currentTime);
    await page.waitForFunction((t) => document.querySelector("#video").currentTime > t + 1.5, t0, { timeout: T });
    step("switched");

    Object.assign(out, await page.evaluate(() => ({
      served: window.shoal.served, errors: window.shoal.errors, switches: window.shoal.levelSwitches,
      current_time: document.querySelector("#video").currentTime,
      media_error: document.querySelector("#video").error && document.querySelector("#video").error.message,
      members: [...document.querySelectorAll("#members tbody tr")].map((r) => r.textContent),
      owner_cell: document.querySelector(`tr[data-id="${window.shoal.playing}"] td:nth-child(5)`).textContent,
    })));
""")


def test_page_uploads_plays_switches_rendition_and_spreads_segments_over_nodes(cluster_factory, tmp_path):
    need_browser()
    c = cluster_factory(3, {"ladder": TEST_LADDER})
    src = media.make_video(tmp_path / "browser.mp4", seconds=12)
    before = {n: httpx.get(c.url(n) + "/v1/node").json()["counters"].get("hls_segments_served", 0)
              for n in c.node_ids}

    # when the page drives upload, playback and a rendition switch
    out, context = run_driver(tmp_path, DRIVER, c.url("n1") + "/", UPLOAD_FILE=str(src), TOKEN=c.token)
    assert out["mse_h264"], "this chromium cannot play H.264/AAC through MSE"
    assert out["problems"] == "", context  # hls.js and tus-js-client were served by the node

    # then the upload went through tus with progress, and the token was kept
    assert out["progress"] == 100 and out["stored_token"] == c.token
    assert out["video_poster"] == f"/v1/videos/{out['vid']}/poster.jpg", context
    assert out["poster_size"][0] > 0 and out["poster_size"][1] > 0, context
    rec = httpx.get(c.url("n2") + f"/v1/videos/{out['vid']}").json()
    assert rec["state"] == "ready" and rec["filename"] == "browser.mp4"

    # and playback advanced with no error, through the rendition switch
    assert out["time_before_switch"] > 3 and out["current_time"] > out["time_before_switch"]
    assert not [e for e in out["errors"] if e["fatal"]] and out["media_error"] is None, context
    assert out["target"] in out["switches"]
    served = out["served"]
    assert {s["level"] for s in served} >= {out["target"]}
    assert all(s["url"].split("/hls/")[1].endswith(".ts") for s in served)

    # and the segments of this one playback came from at least two nodes, by the page's headers...
    by_node = {s["node"] for s in served}
    assert len(by_node) >= 2 and by_node <= set(c.node_ids), by_node
    # ...and by the nodes' own counters
    after = {n: httpx.get(c.url(n) + "/v1/node").json()["counters"].get("hls_segments_served", 0)
             for n in c.node_ids}
    serving = [n for n in c.node_ids if after[n] > before[n]]
    assert len(serving) >= 2, (before, after)
    assert sum(after[n] - before[n] for n in c.node_ids) >= len(served)

    # and the cluster view lists every member alive, with the video's owner
    assert len(out["members"]) == 3 and all("alive" in m for m in out["members"]), out["members"]
    owner = httpx.get(c.url("n1") + f"/v1/cluster/owner/{out['vid']}").json()["owner"]
    assert out["owner_cell"] == owner


CHUNK_DRIVER = driver_script(90000, r"""
    const play = `tr[data-id="${process.env.VIDEO}"] button.play`;
    await page.waitForSelector(play, { timeout: T });
    await page.click(play);
    const until = Number(process.env.PLAY_UNTIL);
    await page.waitForFunction((u) => document.querySelector("#video").currentTime > u, until, { timeout: T });
    Object.assign(out, await page.evaluate(() => {
      const v = document.querySelector("#video");
      const ranges = [];
      for (let i = 0; i < v.buffered.length; i++) ranges.push([v.buffered.start(i), v.buffered.end(i)]);
      return { errors: window.shoal.errors, current_time: v.currentTime, buffered: ranges,
               audio_tracks: window.shoal.hls.audioTracks.length,
               media_error: v.error && v.error.message };
    }));
""")


def test_hls_js_plays_a_chunked_video_across_its_chunk_borders(cluster_factory, tmp_path):
    need_browser()
    # given a video cut in 4 s chunks (borders at 4, 8, 12 s) with its audio as its own group
    c = cluster_factory(3, {"ladder": TEST_LADDER,
                            "processing": {"chunked": True, "chunk_segments": 2, "preset": "ultrafast"}})
    from harness import upload, wait_state
    src = media.make_video(tmp_path / "chunked.mp4", seconds=16)
    vid = upload(c, "n1", src).json()["id"]
    rec = wait_state(c, "n2", vid, "ready", timeout=180)
    assert len(rec["chunks"]) == 5  # 4 chunks and the audio
    # when the page plays it with hls.js past two borders
    out, context = run_driver(tmp_path, CHUNK_DRIVER, c.url("n1") + "/", VIDEO=vid, PLAY_UNTIL="9")
    # then playback advanced with no fatal error, one audio track, and what is buffered is one
    # range: no hole at a chunk border (hls.js may note a hole at t=0 with a separate audio group)
    assert out["current_time"] > 9 and out["media_error"] is None, context
    assert not [e for e in out["errors"] if e["fatal"]], context
    assert out["audio_tracks"] == 1, context
    assert len(out["buffered"]) == 1, context
