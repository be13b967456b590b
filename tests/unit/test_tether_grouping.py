"""How announced files become shots: pairs by stem, libgphoto2's per-file RAM names, late files."""

from __future__ import annotations

from rig.camera.tether import CameraFile, CameraShot, LateFile, ShotGrouper


def names(items: list[CameraShot | LateFile]) -> list[list[str]]:
    return [
        [f.name for f in i.files] if isinstance(i, CameraShot) else [i.file.name] for i in items
    ]


def test_card_pairs_share_the_camera_stem() -> None:
    g = ShotGrouper(files_per_shot=None, quiet_s=1.0)
    card = "/store_00010001/DCIM/100NZ_7"
    assert g.add(CameraFile(card, "DSC_0001.NEF"), 0.0) == []
    done = g.add(CameraFile(card, "DSC_0001.JPG"), 0.1)
    assert names(done) == [["DSC_0001.NEF", "DSC_0001.JPG"]]
    assert g.add(CameraFile(card, "DSC_0002.NEF"), 0.2) == []
    assert names(g.due(0.5)) == []
    assert names(g.due(1.3)) == [["DSC_0002.NEF"]]


def test_ram_captures_pair_across_the_per_file_counter() -> None:
    """camera_wait_for_event names EOS/Nikon RAM files capt%04d with capcnt++ per file."""
    g = ShotGrouper(files_per_shot=2)
    out = []
    for i, ext in enumerate(["cr3", "jpg", "cr3", "jpg"]):
        out += g.add(CameraFile("/", f"capt{i:04d}.{ext}"), float(i))
    assert names(out) == [["capt0000.cr3", "capt0001.jpg"], ["capt0002.cr3", "capt0003.jpg"]]


def test_ram_names_past_9999_still_pair() -> None:
    """``capt%04d`` gives five digits from 10000 on: those names were taken for card files,
    and RAW and JPEG became frames of their own for the rest of a long session."""
    g = ShotGrouper(files_per_shot=2)
    out = []
    for i, ext in zip(range(9998, 10002), ["cr3", "jpg", "cr3", "jpg"], strict=True):
        out += g.add(CameraFile("/", f"capt{i:04d}.{ext}"), float(i))
    assert names(out) == [["capt9998.cr3", "capt9999.jpg"], ["capt10000.cr3", "capt10001.jpg"]]


def test_jpeg_only_bodies_give_one_shot_per_file() -> None:
    g = ShotGrouper(files_per_shot=None, quiet_s=1.0)
    out = g.add(CameraFile("/", "capt0000.jpg"), 0.0)
    out += g.add(CameraFile("/", "capt0001.jpg"), 0.1)
    out += g.add(CameraFile("/d", "GPH_0099.JPG"), 0.2)
    out += g.due(10.0)
    assert names(out) == [["capt0000.jpg"], ["capt0001.jpg"], ["GPH_0099.JPG"]]


def test_a_late_jpeg_goes_to_its_shot_not_a_new_frame() -> None:
    g = ShotGrouper(files_per_shot=2, quiet_s=0.5)
    card = "/store_00020001/DCIM/100CANON"
    g.add(CameraFile(card, "IMG_0001.CR3"), 0.0)
    (first,) = g.due(0.6)
    assert isinstance(first, CameraShot) and len(first.files) == 1
    g.add(CameraFile(card, "IMG_0002.CR3"), 0.7)
    (late,) = g.add(CameraFile(card, "IMG_0001.JPG"), 0.8)
    assert isinstance(late, LateFile) and late.shot is first
    assert [f.name for f in first.files] == ["IMG_0001.CR3", "IMG_0001.JPG"]
    # A RAM shot closed short owes its JPEG: the next synthetic JPEG is that one.
    g2 = ShotGrouper(files_per_shot=2, quiet_s=0.5)
    g2.add(CameraFile("/", "capt0000.nef"), 0.0)
    (short,) = g2.due(1.0)
    (late2,) = g2.add(CameraFile("/", "capt0001.jpg"), 1.1)
    assert isinstance(late2, LateFile) and late2.shot is short


def test_sony_ram_names_keep_the_camera_name() -> None:
    """Sony's RAM files are capt_<camera name>: the pair shares the camera's stem."""
    g = ShotGrouper(files_per_shot=None)
    g.add(CameraFile("/", "capt_DSC00012.ARW"), 0.0)
    done = g.add(CameraFile("/", "capt_DSC00012.JPG"), 0.1)
    assert names(done) == [["capt_DSC00012.ARW", "capt_DSC00012.JPG"]]


def test_a_name_seen_again_is_a_new_shot_not_a_late_file() -> None:
    """A body whose counter restarted (reconnected) reuses names: same kind, so a new frame."""
    g = ShotGrouper(files_per_shot=None, quiet_s=0.2)
    folder = "/store_00010001/DCIM/100GPHOT"
    out = g.add(CameraFile(folder, "GPH_0099.JPG"), 0.0)
    out += g.add(CameraFile(folder, "GPH_0101.JPG"), 0.1)
    out += g.add(CameraFile(folder, "GPH_0099.JPG"), 0.2)
    out += g.due(10.0)
    assert names(out) == [["GPH_0099.JPG"], ["GPH_0101.JPG"], ["GPH_0099.JPG"]]
    assert all(isinstance(i, CameraShot) for i in out)


def test_card_files_named_capt_by_the_photographer_are_card_files() -> None:
    """A Canon can be set to name its files CAPT0001.JPG: those are the photographer's, on the
    card, not libgphoto2's lower-case RAM names; they are kept and paired by stem."""
    card = "/store_00020001/DCIM/100EOS5D"
    assert CameraFile("/", "capt0003.jpg").in_ram
    assert CameraFile("/store_00020001", "capt0004.jpg").in_ram  # an EOS memory-mode capture
    assert CameraFile("/", "capt_DSC00012.ARW").in_ram
    assert not CameraFile(card, "CAPT0001.JPG").in_ram
    assert not CameraFile(card, "CAPT0001.JPG").synthetic
    g = ShotGrouper(files_per_shot=2, quiet_s=1.0)
    out = g.add(CameraFile(card, "CAPT0001.CR3"), 0.0)
    out += g.add(CameraFile(card, "CAPT0002.JPG"), 0.1)  # the next shot's, not this one's pair
    out += g.add(CameraFile(card, "CAPT0002.CR3"), 0.2)
    out += g.due(5.0)
    assert names(out) == [["CAPT0001.CR3"], ["CAPT0002.JPG", "CAPT0002.CR3"]]
