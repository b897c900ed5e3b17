"""End-to-end evaluation on real photos, and the report in a real browser."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from PIL import Image

from hific.coding import unpack
from hific.evaluate import main

LEARNED = "compressai:bmshj2018-hyperprior@1,2"
CODECS = ["jpeg", "webp", "avif", "jxl", "hevc", LEARNED]
FID_DIR_NAME = "fid"


def _learned_weights(root: Path) -> Path:
    """Random bmshj2018-hyperprior weights for qualities 1 and 2 under the zoo's file names."""
    from test_learned import write_zoo_weights

    write_zoo_weights(root / "weights", "bmshj2018-hyperprior", [1, 2])
    return root / "weights"


def _eval_folder(root: Path, lpips_dir: Path, photos: List[Path]) -> Tuple[Path, Path, Path]:
    """``root``, a data folder in it holding copies of ``photos``, and the FID weights (or skip)."""
    fid_dir = lpips_dir.parent / FID_DIR_NAME
    if not (fid_dir / "inception-2015-12-05.pth").is_file():
        pytest.skip(f"FID Inception weights not found in {fid_dir}")
    data = root / "data"
    data.mkdir()
    for p in photos:
        shutil.copy(p, data / p.name)
    return root, data, fid_dir


@pytest.fixture(scope="module")
def report(val_images: List[Path], lpips_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One evaluation of an untrained hific-tiny checkpoint on 3 real val photos."""
    from hific.checkpoint import init_checkpoint

    # Two 481x321 photos and one 500x500 photo (which also gets the shifted patch pass).
    picks = [p for p in val_images if p.name.startswith("CBSD68")][:2]
    picks += [p for p in val_images if p.name.startswith("McMaster")][:1]
    root, data, fid_dir = _eval_folder(tmp_path_factory.mktemp("eval"), lpips_dir, picks)
    ckpt = init_checkpoint("hific-tiny", root / "tiny.pt", seed=0)
    out = root / "report"
    rc = main(["--checkpoint", str(ckpt), "--label", "tiny", "--data", str(data), "--out", str(out),
               "--codecs", ",".join(CODECS), "--device", "cpu", "--lpips-weights", str(lpips_dir),
               "--fid-weights", str(fid_dir), "--no-progress", "--crops", "2",
               "--learned-weights", str(_learned_weights(root))])
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
    text = (report / "results.md").read_text()
    table, bd = text.split("\n\n", 1)
    assert len(table.splitlines()) == 2 + 1 + len(CODECS)
    # One checkpoint is one hific point: every BD is undefined, and the report says why.
    assert "BD-rate PSNR (%)" in bd and "hific (anchor): fewer than two points, so no curve" in bd
    res = _results(report)
    assert len(res["bd"]["rows"]) == len(CODECS) and res["bd"]["anchor"] == "hific"
    assert all(v is None for r in res["bd"]["rows"] for v in r["bd_rate"].values())
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
    const bd = d.getElementById("bd");
    const cells = bd ? Array.from(bd.querySelectorAll("td")).map((c) => c.textContent) : [];
    const plots = imgs.filter((i) => (i.getAttribute("src") || "").startsWith("plots/") && i.naturalWidth > 300);
    document.getElementById("out").textContent = JSON.stringify(
      {images: imgs.length, broken, before, after, methods, right: d.getElementById("right").getAttribute("src"),
       bdRows: bd ? bd.querySelectorAll("tr").length - 1 : -1, bdCells: cells, plots: plots.length,
       bdVisible: bd ? bd.getBoundingClientRect().height > 20 : false});
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


def _browser_state(report: Path, tmp_path: Path) -> Dict[str, Any]:
    """Open the report in headless Chromium through the harness page; what the page reported."""
    browser = _chromium()
    harness = report / "browser_check.html"
    harness.write_text(_HARNESS)
    proc = subprocess.run([browser, *_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
                           "--dump-dom", harness.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout.split('<pre id="out">', 1)[1].split("</pre>", 1)[0]
    return json.loads(text.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


@pytest.mark.slow
def test_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    profile = tmp_path / "profile"
    state = _browser_state(report, tmp_path)
    assert state["images"] >= 5 + 2 + 2  # plots, crops, the two viewer images
    assert state["broken"] == [] and state["plots"] == 5
    assert state["bdRows"] == len(CODECS) and state["bdVisible"]
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


@pytest.fixture(scope="module")
def curves(val_images: List[Path], lpips_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``--mode curves`` on one 500x500 photo: two hific points, JPEG/WebP on a grid, a zoo model at 2 qualities."""
    from hific.checkpoint import init_checkpoint

    picks = [next(p for p in val_images if p.name.startswith("McMaster"))]
    root, data, fid_dir = _eval_folder(tmp_path_factory.mktemp("curves"), lpips_dir, picks)
    a = init_checkpoint("hific-tiny", root / "a.pt", seed=0)
    b = init_checkpoint("hific-tiny", root / "b.pt", seed=3)
    out = root / "report"
    rc = main(["--checkpoint", str(a), "--checkpoint", str(b), "--data", str(data), "--out", str(out),
               "--mode", "curves", "--codecs", f"jpeg,webp,{LEARNED}", "--bpp-grid", "0.4,0.8", "--anchor", "jpeg",
               "--device", "cpu", "--lpips-weights", str(lpips_dir), "--fid-weights", str(fid_dir), "--no-progress",
               "--crops", "1", "--learned-weights", str(_learned_weights(root))])
    assert rc == 0
    return out


@pytest.mark.slow
def test_curves_put_every_codec_at_its_own_points(curves: Path) -> None:
    from hific.evaluation.learned import unpack_strings

    res = _results(curves)
    assert res["mode"] == "curves"
    rows = res["aggregate"]
    by_curve: Dict[str, List[Dict[str, Any]]] = {}
    for r in rows:
        by_curve.setdefault(r["curve"], []).append(r)
    assert set(by_curve) == {"hific", "jpeg", "webp", LEARNED}
    assert sorted(r["label"] for r in by_curve["hific"]) == ["hific a", "hific b"]
    assert sorted(r["quality"] for r in by_curve[LEARNED]) == [1, 2]
    for name in ("jpeg", "webp"):
        per = [r for r in res["per_image"] if r["method"] == name]
        assert sorted(r["target_bpp"] for r in per) == [0.4, 0.8]
        assert all(r["bpp"] <= r["target_bpp"] or r["at_floor"] for r in per)
    h = w = 500
    for r in res["per_image"]:
        assert r["bpp"] == pytest.approx(8 * (curves / r["file"]).stat().st_size / (h * w))
        if r["method"] == LEARNED:  # a real container of CompressAI's strings, at the row's quality
            assert unpack_strings((curves / r["file"]).read_bytes())[0] == r["quality"]


@pytest.mark.slow
def test_curves_bd_table_against_the_anchor(curves: Path) -> None:
    from hific.evaluation.bd import bd_metric, bd_rate, ms_ssim_db

    res = _results(curves)
    bd = res["bd"]
    assert bd["anchor"] == "jpeg" and bd["anchor_points"] == 2
    rows = {r["curve"]: r for r in bd["rows"]}
    assert set(rows) == {"hific", "webp", LEARNED}
    jpeg = sorted((r for r in res["aggregate"] if r["curve"] == "jpeg"), key=lambda r: r["bpp"])
    webp = sorted((r for r in res["aggregate"] if r["curve"] == "webp"), key=lambda r: r["bpp"])
    rate = bd_rate([r["bpp"] for r in jpeg], [r["psnr"] for r in jpeg], [r["bpp"] for r in webp],
                   [r["psnr"] for r in webp]).value
    assert rate is not None and rows["webp"]["bd_rate"]["psnr"] == pytest.approx(rate)
    delta = bd_metric([r["bpp"] for r in jpeg], [ms_ssim_db(r["ms_ssim"]) for r in jpeg],
                      [r["bpp"] for r in webp], [ms_ssim_db(r["ms_ssim"]) for r in webp]).value
    assert rows["webp"]["bd_metric"]["ms_ssim"] == pytest.approx(delta)
    text = (curves / "results.md").read_text()
    assert "BD-rate and BD-metric against JPEG" in text and f"| {rows['webp']['label']} | 2 | " in text
    for metric in ("lpips", "fid", "kid", "psnr", "ms_ssim"):
        assert (curves / "plots" / f"{metric}.png").is_file()
    assert len(list((curves / "crops").glob("*.png"))) == 1


@pytest.mark.slow
def test_curves_report_in_headless_chromium(curves: Path, tmp_path: Path) -> None:
    state = _browser_state(curves, tmp_path)
    assert state["broken"] == [] and state["plots"] == 5
    assert state["bdRows"] == 3 and state["bdVisible"]
    assert any(c.replace(".", "").lstrip("-").isdigit() for c in state["bdCells"])  # a defined BD shows a number
    assert state["methods"][0] == "original" and len(state["methods"]) == 1 + 2 + 4 + 2


@pytest.mark.slow
def test_baselines_from_an_earlier_curves_report(curves: Path, lpips_dir: Path, tmp_path: Path) -> None:
    """A new checkpoint against the baselines of ``curves``, without coding them again: the same rows and deltas."""
    root = curves.parent
    out = tmp_path / "again"
    rc = main(["--checkpoint", str(root / "b.pt"), "--data", str(root / "data"), "--out", str(out), "--mode", "curves",
               "--baselines-from", str(curves), "--anchor", "jpeg", "--device", "cpu", "--lpips-weights",
               str(lpips_dir), "--fid-weights", str(lpips_dir.parent / FID_DIR_NAME), "--no-progress", "--crops", "1"])
    assert rc == 0
    before, after = _results(curves), _results(out)

    def rows(res: Dict[str, Any], hific: bool) -> List[Dict[str, Any]]:  # lpips_ratio: relative to this run's hific
        return sorted(({k: v for k, v in r.items() if k != "lpips_ratio"} for r in res["aggregate"]
                       if (r["method"] == "hific") == hific), key=lambda r: r["label"])

    assert rows(after, False) == rows(before, False) and len(rows(after, False)) == 2 + 2 + 2
    assert rows(after, True) == [r for r in rows(before, True) if r["label"] == "hific b"]
    assert {r["method"] for r in after["per_image"]} == {"hific"}  # nothing else was coded
    ours = rows(after, True)[0]["lpips"]
    assert all(r["lpips_ratio"] == pytest.approx(r["lpips"] / ours) for r in after["aggregate"])
    assert not (out / "files" / "curves" / "jpeg").exists()
    assert after["curves"]["webp"] == before["curves"]["webp"]  # the plots' legend keeps the codec's name
    bd_before = {r["curve"]: r for r in before["bd"]["rows"]}
    for r in after["bd"]["rows"]:
        if r["curve"] != "hific":
            assert r == bd_before[r["curve"]]
    assert "reused from" in after["summary"] and after["baselines_from"] == str(curves)


def test_baselines_from_refuses_another_image_set(tiny_ckpt: Path, photos: List[Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    header = "point,method,label,curve,images,quality,realism,bpp,psnr,ms_ssim,lpips,at_floor,fid,kid,kid_std,patches"
    jpeg = "curves,jpeg,JPEG @ 0.100 bpp,jpeg,{n},,,0.1,25.0,0.9,0.3,0,nan,nan,nan,0"
    report, val_dir = tmp_path / "earlier", tmp_path / "data"
    report.mkdir()
    val_dir.mkdir()
    for p in photos[:2]:
        shutil.copy(p, val_dir / p.name)
    argv = ["--checkpoint", str(tiny_ckpt), "--data", str(val_dir), "--out", str(tmp_path / "r"), "--mode", "curves",
            "--baselines-from", str(report), "--device", "cpu", "--no-progress"]
    n = len(list(val_dir.iterdir()))
    cases = [  # (csv text, the error's key words)
        (f"{header}\n{jpeg.format(n=n + 1)}\n", f"made on {n + 1} images, this run has {n}"),
        ("not,a,report\n1,2,3\n", "not a results_aggregate.csv"),
        (f"{header}\n{jpeg.format(n=n).replace('curves,', 'tiny,', 1)}\n", "not a --mode curves report"),
        (f"{header}\n{jpeg.format(n=n).replace('0.1,25.0', '0.1,x')}\n", "column 'psnr' is not a number"),
        (f"{header}\n{jpeg.format(n=n)},extra\n", "wrong number of fields"),
    ]
    for text, words in cases:
        (report / "results_aggregate.csv").write_text(text)
        assert words in _cli_error(argv, capsys)
    (report / "results_aggregate.csv").write_text(f"{header}\n{jpeg.format(n=n)}\n")
    (report / "results.json").write_text(json.dumps({"images": [{"name": f"other{i}"} for i in range(n)]}))
    assert "was made on other images" in _cli_error(argv, capsys)
    (report / "results.json").write_text(json.dumps({"images": [{"name": p.stem} for p in photos[:2]]}))
    assert "--codecs jpeg is also in" in _cli_error([*argv, "--codecs", "jpeg"], capsys)
    assert "needs --mode curves" in _cli_error([a for a in argv if a not in ("--mode", "curves")], capsys)
    assert not (tmp_path / "r").exists()


def _cli_error(argv: List[str], capsys: pytest.CaptureFixture) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_rate_options_need_a_variable_rate_checkpoint(tiny_ckpt: Path, val_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    for extra in (["--qualities", "0.1,0.3"], ["--realism", "0,1"]):
        line = _cli_error(["--checkpoint", str(tiny_ckpt), "--data", str(val_dir), "--out", str(tmp_path / "r"),
                           "--codecs", "jpeg", "--device", "cpu", "--no-progress", *extra], capsys)
        assert "this checkpoint codes at one rate" in line
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tiny_ckpt), "--data", str(val_dir), "--out", str(tmp_path / "r"),
              "--qualities", "1.5"])


def test_unknown_anchor_lists_the_curves(tiny_ckpt: Path, val_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    line = _cli_error(["--checkpoint", str(tiny_ckpt), "--data", str(val_dir), "--out", str(tmp_path / "r"),
                       "--codecs", "jpeg,webp", "--anchor", "bpg", "--device", "cpu", "--no-progress"], capsys)
    assert "--anchor 'bpg'" in line and "hific, jpeg, webp" in line


def test_absent_learned_weights_stop_before_any_coding(tiny_ckpt: Path, val_dir: Path, tmp_path: Path,
                                                       block_downloads: List[str],
                                                       capsys: pytest.CaptureFixture) -> None:
    line = _cli_error(["--checkpoint", str(tiny_ckpt), "--data", str(val_dir), "--out", str(tmp_path / "r"),
                       "--codecs", "jpeg,compressai:mbt2018-mean@2", "--device", "cpu", "--no-progress"], capsys)
    assert "mbt2018-mean-2-e54a039d.pth.tar" in line and "--learned-weights" in line
    assert not (tmp_path / "r").exists()
    line = _cli_error(["--checkpoint", str(tiny_ckpt), "--data", str(val_dir), "--out", str(tmp_path / "r"),
                       "--codecs", "compressai:mbt2018-mean@2", "--learned-weights", str(tmp_path),
                       "--device", "cpu", "--no-progress"], capsys)
    assert f"--learned-weights {tmp_path} has no checkpoints/mbt2018-mean-2-" in line


def test_the_default_anchor_is_the_realistic_hific_curve() -> None:
    """With realism levels, the default and ``--anchor hific`` both mean the r = 1 curve."""
    from hific.evaluation.harness import EvalOptions, _Hific, _check_anchor

    ckpts = [_Hific("a", "a.pt", None, False)]  # type: ignore[arg-type]
    opts = EvalOptions(data="d", checkpoints=["a.pt"], out="o", realisms=(0.0, 1.0))
    assert _check_anchor(opts, ckpts, []) == "hific r=1.0"
    assert _check_anchor(dataclasses.replace(opts, anchor="hific"), ckpts, []) == "hific r=1.0"
    assert _check_anchor(dataclasses.replace(opts, anchor="hific r=0.0"), ckpts, []) == "hific r=0.0"
    assert _check_anchor(dataclasses.replace(opts, realisms=()), ckpts, []) == "hific"
    with pytest.raises(ValueError, match=r"hific r=1\.0, hific r=0\.0"):
        _check_anchor(dataclasses.replace(opts, anchor="bpg"), ckpts, [])
