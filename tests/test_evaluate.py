"""End-to-end evaluation on real photos, and the report in a real browser."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
from PIL import Image

from hific.coding import unpack
from hific.evaluate import main

CODECS = ["jpeg", "webp", "avif", "jxl", "hevc"]
FID_DIR_NAME = "fid"


@pytest.fixture(scope="module")
def report(val_images: List[Path], lpips_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One evaluation of an untrained hific-tiny checkpoint on 3 real val photos."""
    from hific.checkpoint import init_checkpoint

    fid_dir = lpips_dir.parent / FID_DIR_NAME
    if not (fid_dir / "inception-2015-12-05.pth").is_file():
        pytest.skip(f"FID Inception weights not found in {fid_dir}")
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    data.mkdir()
    # Two 481x321 photos and one 500x500 photo (which also gets the shifted patch pass).
    picks = [p for p in val_images if p.name.startswith("CBSD68")][:2]
    picks += [p for p in val_images if p.name.startswith("McMaster")][:1]
    for p in picks:
        shutil.copy(p, data / p.name)
    ckpt = init_checkpoint("hific-tiny", root / "tiny.pt", seed=0)
    out = root / "report"
    rc = main(["--checkpoint", str(ckpt), "--label", "tiny", "--data", str(data), "--out", str(out),
               "--codecs", ",".join(CODECS), "--device", "cpu", "--lpips-weights", str(lpips_dir),
               "--fid-weights", str(fid_dir), "--no-progress", "--crops", "2"])
    assert rc == 0
    return out


def _results(report: Path) -> Dict[str, Any]:
    return json.loads((report / "results.json").read_text())


def test_every_image_and_codec_is_scored(report: Path) -> None:
    res = _results(report)
    assert res["points"] == ["tiny"] and len(res["images"]) == 3
    per = res["per_image"]
    assert len(per) == 3 * (1 + len(CODECS))
    for row in per:
        assert (report / row["file"]).is_file() and (report / row["recon"]).is_file()
        assert math.isfinite(row["psnr"]) and 0 <= row["lpips"] < 2
        # bpp is the real size of the stored file.
        h, w = next((i["height"], i["width"]) for i in res["images"] if i["name"] == row["image"])
        assert row["bpp"] == pytest.approx(8 * (report / row["file"]).stat().st_size / (h * w))
    aggregate = {r["method"]: r for r in res["aggregate"]}
    assert set(aggregate) == {"hific", *CODECS}
    for r in aggregate.values():
        assert r["images"] == 3 and math.isfinite(r["fid"]) and math.isfinite(r["kid"])
        assert r["patches"] == 1 + 1 + 2  # 481x321 twice, 500x500 with the shifted pass
    assert aggregate["hific"]["lpips_ratio"] == pytest.approx(1.0)


def test_baselines_are_matched_to_our_bpp_or_at_their_floor(report: Path) -> None:
    res = _results(report)
    ours = {r["image"]: r for r in res["per_image"] if r["method"] == "hific"}
    for row in res["per_image"]:
        if row["method"] == "hific":
            continue
        target = ours[row["image"]]["bpp"]
        assert row["target_bpp"] == pytest.approx(target)
        if row["at_floor"]:
            assert row["bpp"] > target
        else:
            assert row["bpp"] <= target + 1e-12


def test_learned_files_are_real_hific_files(report: Path) -> None:
    res = _results(report)
    for row in res["per_image"]:
        if row["method"] == "hific":
            f = unpack((report / row["file"]).read_bytes())
            assert f.preset == "hific-tiny"


def test_report_outputs_exist(report: Path) -> None:
    for name in ("results.json", "results.csv", "results_aggregate.csv", "results.md", "index.html"):
        assert (report / name).is_file(), name
    rows = list(csv.DictReader((report / "results.csv").open()))
    assert len(rows) == 3 * (1 + len(CODECS))
    table = (report / "results.md").read_text()
    assert table.count("\n") == 2 + 1 + len(CODECS)
    for metric in ("lpips", "fid", "kid", "psnr", "ms_ssim"):
        with Image.open(report / "plots" / f"{metric}.png") as img:
            assert img.width > 300
    crops = sorted((report / "crops").glob("*.png"))
    assert len(crops) == 2
    html = (report / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # self-contained, no CDN


_HARNESS = """<!doctype html><html><body><pre id="out">pending</pre>
<iframe id="f" src="index.html" style="width:1400px;height:1000px"></iframe>
<script>
document.getElementById("f").addEventListener("load", () => {
  setTimeout(() => {
    const d = document.getElementById("f").contentDocument;
    const imgs = Array.from(d.images);
    const broken = imgs.filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.getAttribute("src"));
    const slider = d.getElementById("split");
    const right = d.getElementById("right");
    const before = right.style.clipPath;
    slider.value = 20;
    slider.dispatchEvent(new Event("input"));
    const after = right.style.clipPath;
    const methods = Array.from(d.getElementById("rightm").options).map((o) => o.value);
    d.getElementById("rightm").value = methods[methods.length - 1];
    d.getElementById("rightm").dispatchEvent(new Event("change"));
    document.getElementById("out").textContent = JSON.stringify(
      {images: imgs.length, broken, before, after, methods, right: d.getElementById("right").getAttribute("src")});
  }, 1500);
});
</script></body></html>
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (Debian package 'chromium'; .ci/run installs it)")


_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--allow-file-access-from-files"]


@pytest.mark.slow
def test_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    harness = report / "browser_check.html"
    harness.write_text(_HARNESS)
    profile = tmp_path / "profile"
    proc = subprocess.run([browser, *_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                           "--dump-dom", harness.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout.split('<pre id="out">', 1)[1].split("</pre>", 1)[0]
    state = json.loads(text.replace("&quot;", '"').replace("&amp;", "&"))
    assert state["images"] >= 5 + 2 + 2  # plots, crops, the two viewer images
    assert state["broken"] == []
    assert "20%" in state["after"] and state["after"] != state["before"]
    assert state["methods"][0] == "original" and len(state["methods"]) == 2 + len(CODECS)
    assert state["right"].startswith("images/tiny/")
    shot = tmp_path / "report.png"
    subprocess.run([browser, *_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                    "--window-size=1400,2400", "--virtual-time-budget=5000", (report / "index.html").as_uri()],
                   capture_output=True, text=True, timeout=120)
    with Image.open(shot) as img:
        assert img.size == (1400, 2400)
        colours = img.convert("RGB").resize((64, 64)).getcolors(64 * 64)
        assert colours is not None and len(colours) > 20  # the page rendered content, not a blank
    shutil.copy(shot, report / "screenshot.png")


def test_several_checkpoints_make_a_curve(val_images: List[Path], lpips_dir: Path, tmp_path: Path) -> None:
    """Two operating points: each codec gets one matched point per checkpoint."""
    from hific.checkpoint import init_checkpoint

    fid_dir = lpips_dir.parent / FID_DIR_NAME
    if not (fid_dir / "inception-2015-12-05.pth").is_file():
        pytest.skip(f"FID Inception weights not found in {fid_dir}")
    data = tmp_path / "data"
    data.mkdir()
    for p in val_images[:2]:
        shutil.copy(p, data / p.name)
    a = init_checkpoint("hific-tiny", tmp_path / "a.pt", seed=0)
    b = init_checkpoint("hific-tiny", tmp_path / "b.pt", seed=3)
    out = tmp_path / "report"
    rc = main(["--checkpoint", str(a), "--checkpoint", str(b), "--data", str(data), "--out", str(out),
               "--codecs", "jpeg", "--device", "cpu", "--lpips-weights", str(lpips_dir),
               "--fid-weights", str(fid_dir), "--no-progress", "--crops", "1"])
    assert rc == 0
    res = _results(out)
    assert res["points"] == ["a", "b"]
    rows = {(r["point"], r["method"]): r for r in res["aggregate"]}
    assert set(rows) == {("a", "hific"), ("a", "jpeg"), ("b", "hific"), ("b", "jpeg")}
    for point in ("a", "b"):
        ours = [r for r in res["per_image"] if r["point"] == point and r["method"] == "hific"]
        jpeg = [r for r in res["per_image"] if r["point"] == point and r["method"] == "jpeg"]
        assert [r["target_bpp"] for r in jpeg] == pytest.approx([r["bpp"] for r in ours])
    assert len(list((out / "crops").glob("*.png"))) == 2  # one sheet per point
