"""Linear and CFA DNG writing: the tags an editor needs, and LibRaw reading the pixels back."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile

from rig.sim.bayer import (
    BLACK_LEVEL,
    CFA_LAYOUTS,
    WB_MULTIPLIERS,
    WHITE_LEVEL,
    encode_bayer_dng,
    synthetic_profile,
)
from stacker.dng import LINEAR_RAW, ColourProfile, write_linear_dng
from stacker.errors import StackerError
from stacker.raw import camera_to_srgb, read_profile, read_raw_linear, render


def tags_of(data: bytes) -> tuple[dict[str, object], dict[str, object]]:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        tags = {t.name: t.value for t in page.tags.values()}  # type: ignore[union-attr]
    return tags, tags.pop("ExifTag")  # type: ignore[return-value]


def test_linear_dng_carries_the_profile_and_round_trips_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 65536, (300, 64, 3), dtype=np.uint16)  # more rows than one strip
    path = write_linear_dng(tmp_path / "linear.dng", bgr, synthetic_profile(), software="stackrig")
    tags, exif = tags_of(path.read_bytes())
    assert tags["PhotometricInterpretation"] == LINEAR_RAW and tags["SamplesPerPixel"] == 3
    assert tags["DNGVersion"] == b"\x01\x04\x00\x00"
    assert tags["DNGBackwardVersion"] == b"\x01\x01\x00\x00"
    assert (tags["Make"], tags["Model"]) == ("stackrig", "Synthetic Bayer")
    assert tags["UniqueCameraModel"] == "stackrig Synthetic Bayer"
    assert tags["Orientation"] == 1 and tags["CalibrationIlluminant1"] == 21
    assert tags["BlackLevel"] == (0, 0, 0) and tags["WhiteLevel"] == (65535, 65535, 65535)
    cm = np.array(tags["ColorMatrix1"], dtype=float).reshape(9, 2)
    np.testing.assert_allclose(cm[:, 0] / cm[:, 1], synthetic_profile().color_matrix1.ravel(),
                               atol=1e-6)  # fmt: skip
    neutral = np.array(tags["AsShotNeutral"], dtype=float).reshape(3, 2)
    np.testing.assert_allclose(neutral[:, 0] / neutral[:, 1], 1 / np.array(WB_MULTIPLIERS))
    assert exif["ExposureTime"] == (1, 100) and exif["ISOSpeedRatings"] == 100
    assert exif["LensModel"] == "Synthetic Macro 100mm"
    assert np.array_equal(tifffile.imread(path), bgr[:, :, ::-1])  # stored as RGB
    assert np.array_equal(read_raw_linear(path), bgr)  # LibRaw reads it back to the bit
    with rawpy.imread(str(path)) as raw:
        assert raw.num_colors == 3 and raw.raw_type == rawpy.RawType.Stack
        assert raw.camera_whitebalance[:3] == pytest.approx(WB_MULTIPLIERS, rel=1e-6)
        if hasattr(raw, "other"):  # LibRaw's shot data, in rawpy from 0.27
            assert raw.other.iso_speed == 100 and raw.lens.model == "Synthetic Macro 100mm"


@pytest.mark.parametrize("layout", sorted(CFA_LAYOUTS))
def test_bayer_dng_is_read_by_libraw_in_linear_light(tmp_path: Path, layout: str) -> None:
    frame = np.zeros((32, 48, 3), np.uint16)
    frame[..., 2], frame[..., 1], frame[..., 0] = 40000, 30000, 20000  # R, G, B scene light
    path = tmp_path / f"{layout}.dng"
    path.write_bytes(encode_bayer_dng(frame, layout))
    with rawpy.imread(str(path)) as raw:
        desc = raw.color_desc.decode()
        pattern = "".join(desc[c] for c in raw.raw_pattern.ravel())
        assert pattern == layout
        assert raw.black_level_per_channel[0] == BLACK_LEVEL and raw.white_level == WHITE_LEVEL
        colours = raw.raw_colors_visible
        values = raw.raw_image_visible
        red = values[colours == desc.index("R")]
        assert (
            red.min()
            == red.max()
            == BLACK_LEVEL + round(40000 * (WHITE_LEVEL - BLACK_LEVEL) / 65535 / WB_MULTIPLIERS[0])
        )
    linear = read_raw_linear(path).astype(float)
    expected = np.array([20000 / WB_MULTIPLIERS[2], 30000, 40000 / WB_MULTIPLIERS[0]])  # BGR
    np.testing.assert_allclose(linear[8:-8, 8:-8].reshape(-1, 3).mean(0), expected, rtol=2e-3)


def test_profile_read_back_and_rendering_undo_the_camera(tmp_path: Path) -> None:
    path = tmp_path / "frame.dng"
    grey = np.full((32, 32, 3), 20000, np.uint16)
    path.write_bytes(encode_bayer_dng(grey, "RGGB", capture_time="2026:02:03 04:05:06"))
    profile = read_profile(path)
    assert (profile.make, profile.model) == ("stackrig", "Synthetic Bayer")
    assert profile.as_shot_neutral == pytest.approx(1 / np.array(WB_MULTIPLIERS), rel=1e-5)
    assert dict((t, v) for t, _, v in profile.exif)[36867] == "2026:02:03 04:05:06"
    # the synthetic camera divides by the multipliers; rendering multiplies them back
    np.testing.assert_allclose(camera_to_srgb(profile), np.diag(WB_MULTIPLIERS), atol=1e-3)
    shown = render(read_raw_linear(path), profile)
    srgb_of_grey = 1.055 * (20000 / 65535) ** (1 / 2.4) - 0.055
    np.testing.assert_allclose(shown[8:-8, 8:-8].mean((0, 1)) / 65535, srgb_of_grey, atol=2e-3)


def test_blown_highlights_render_white_not_magenta() -> None:
    """White balance and matrix were one product, clipped after: a photosite clipped in every
    channel went past white in red and blue once balanced, and a real camera's matrix (Canon's
    ColorMatrix, daylight balance) turned every blown highlight magenta (255, 188, 255)."""
    canon = np.array([6446, -366, -864, -4436, 12204, 2513, -952, 2496, 6348]).reshape(3, 3)
    profile = ColourProfile("Canon", "EOS 5D Mark IV", canon / 1e4, (0.5, 1.0, 1 / 1.5))
    clipped = np.full((2, 2, 3), 65535, np.uint16)
    clipped[1, 1] = (40000, 65535, 30000)  # BGR: only green clipped, as often in daylight
    shown = render(clipped, profile)
    assert shown[0, 0].tolist() == [65535, 65535, 65535]
    assert shown[1, 1].min() >= 55000  # near white, not (255, 214, 255)
    # below clipping it is the one product, as before (sRGB curve on the clipped product)
    mid = np.random.default_rng(5).integers(2000, 20000, (8, 8, 3)).astype(np.uint16)
    flip = np.eye(3)[::-1]
    linear = np.clip(mid @ (flip @ camera_to_srgb(profile) @ flip).T / 65535, 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    assert np.abs(render(mid, profile) / 65535 - srgb).max() < 2e-3


def test_rendering_a_dual_illuminant_dng_uses_the_matrix_for_the_light() -> None:
    """Cameras' own DNGs hold ColorMatrix1 for Standard Light A and ColorMatrix2 for D65; the
    DNG specification (chapter 6, "Mapping Camera Color Space to CIE XYZ Space") interpolates
    them in inverse colour temperature of the white balance. Rendering a daylight shot with the
    tungsten matrix alone tinted every JPEG and TIFF made from such frames."""
    from dataclasses import replace

    from rig.sim.bayer import XYZ_TO_SRGB

    daylight = synthetic_profile()
    tungsten_wb = np.array([1.2, 1.0, 2.6])  # the same sensor calibrated under Standard Light A
    matrix_a = np.diag(1 / tungsten_wb) @ XYZ_TO_SRGB @ np.diag([0.9, 1.0, 1.1])
    profile = replace(daylight, color_matrix1=matrix_a, illuminant1=17,
                      color_matrix2=daylight.color_matrix1, illuminant2=21)  # fmt: skip
    # a daylight shot: its as-shot neutral is the D65 white seen through ColorMatrix2
    np.testing.assert_allclose(camera_to_srgb(profile), np.diag(WB_MULTIPLIERS), atol=1e-3)
    # a tungsten shot: the neutral of Standard Light A's white through ColorMatrix1
    white_a = matrix_a @ np.array([1.09850, 1.0, 0.35585])
    under_a = replace(profile, as_shot_neutral=tuple(white_a / white_a[1]))
    single = replace(under_a, color_matrix2=None, illuminant2=None)
    np.testing.assert_allclose(camera_to_srgb(under_a), camera_to_srgb(single), atol=1e-3)


def test_a_dng_frames_baseline_exposure_goes_into_the_stacked_dng(tmp_path: Path) -> None:
    """BaselineExposure (DNG 1.4, chapter 4) moves a camera DNG's zero point: Lightroom shows
    Leica, Pentax and converted DNGs brightened by it. A stacked DNG without it opened up to a
    stop darker than the frames it was made of."""
    from dataclasses import replace

    from rig.sim.bayer import CAMERA_SOFTWARE
    from stacker.dng import CFA, encode_dng, profile_tags
    from stacker.raw import write_raw_result

    profile = replace(synthetic_profile(), baseline_exposure=0.35)
    cfa_tags = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)]
    frame = tmp_path / "frame.dng"
    frame.write_bytes(encode_dng(np.full((32, 32), 4000, np.uint16),
                                 profile_tags(profile) + cfa_tags, photometric=CFA,  # type: ignore[arg-type]
                                 black=(BLACK_LEVEL,), white=(WHITE_LEVEL,),
                                 software=CAMERA_SOFTWARE))  # fmt: skip
    assert read_profile(frame).baseline_exposure == pytest.approx(0.35)
    stacked = write_raw_result(tmp_path / "stacked.dng", read_raw_linear(frame), frame,
                               software="stackrig")  # fmt: skip
    with tifffile.TiffFile(stacked) as tif:
        numerator, denominator = tif.pages[0].tags["BaselineExposure"].value  # type: ignore[index]
    assert numerator / denominator == 0.35
    plain = write_linear_dng(tmp_path / "plain.dng", read_raw_linear(frame), synthetic_profile(),
                             software="stackrig")  # fmt: skip
    assert "BaselineExposure" not in tags_of(plain.read_bytes())[0]  # 0, the default: left out


@pytest.mark.parametrize("ext", [".dng", ".tif"])
def test_a_monochrome_camera_s_raw_stack_is_written(tmp_path: Path, ext: str) -> None:
    """LibRaw decodes a monochrome camera's RAW frames to three equal channels, so the stack
    is greyscale and its composite one channel: the DNG was refused ("needs a colour image")
    and the rendered TIFF ended in an OpenCV traceback."""
    import cv2

    from stacker.output import save_outputs
    from stacker.stack import Stacker

    rng = np.random.default_rng(4)
    scene = cv2.GaussianBlur(rng.uniform(3000, 50000, (120, 160)).astype(np.float32), (0, 0), 2)
    frames = []
    for i in range(3):
        moved = np.roll(scene, i, axis=1).astype(np.uint16)
        path = tmp_path / f"mono_{i}.dng"
        write_linear_dng(path, cv2.merge([moved] * 3), synthetic_profile(), software="camera")
        frames.append(path)
    stacker = Stacker()
    for path in frames:
        assert stacker.add(read_raw_linear(path), path.name, linear=True).merged
    assert stacker.greyscale
    out = save_outputs(stacker, tmp_path / f"stacked{ext}", metadata_from=frames[0])[0]
    written = read_raw_linear(out) if ext == ".dng" else tifffile.imread(out)
    assert written.shape[:2] == stacker.result().shape and written.ndim == 3


def test_a_frame_with_a_four_colour_matrix_is_named_in_the_error(tmp_path: Path) -> None:
    """A DNG whose ColorMatrix1 has twelve values (a four-colour sensor) cannot be profiled:
    the stack ended on "colour matrix with 12 values", without saying which of the frames."""
    from stacker.dng import CFA, encode_dng, profile_tags

    tags = [t for t in profile_tags(synthetic_profile()) if t[0] != 50721]
    tags += [(50721, "2i", 12, [1, 1] * 12, True), (33421, "H", 2, (2, 2), True),
             (33422, "B", 4, (0, 1, 1, 2), True)]  # fmt: skip
    frame = tmp_path / "DSC_0042.dng"
    frame.write_bytes(encode_dng(np.full((32, 32), 4000, np.uint16), tags, photometric=CFA,
                                 black=(BLACK_LEVEL,), white=(WHITE_LEVEL,)))  # fmt: skip
    with pytest.raises(StackerError, match=r"DSC_0042\.dng: colour matrix with 12 values"):
        read_profile(frame)


@pytest.mark.parametrize(
    ("tag", "damaged"),
    [(50728, (50728, "I", 3, (1, 1, 1), True)), (50778, (50778, "H", 2, (21, 17), True))],
)
def test_a_frame_with_damaged_colour_tags_is_named_in_the_error(
    tmp_path: Path, tag: int, damaged: tuple
) -> None:
    """A DNG whose AsShotNeutral holds three LONGs (not numerator/denominator pairs) stopped
    on IndexError, one whose CalibrationIlluminant1 holds two SHORTs on TypeError; an EXIF tag
    with no value (an ISO of count 0) on IndexError: found by mutating synthetic DNGs."""
    from stacker.dng import CFA, encode_dng, profile_tags

    tags = [t for t in profile_tags(synthetic_profile()) if t[0] != tag] + [damaged]
    tags += [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)]
    frame = tmp_path / "DSC_0042.dng"
    frame.write_bytes(encode_dng(np.full((32, 32), 4000, np.uint16), tags, photometric=CFA,
                                 black=(BLACK_LEVEL,), white=(WHITE_LEVEL,)))  # fmt: skip
    with pytest.raises(StackerError, match=rf"DSC_0042\.dng: DNG tag {tag} is damaged"):
        read_profile(frame)
    frame.write_bytes(encode_dng(np.full((32, 32), 4000, np.uint16), tags[:-3] + tags[-2:],
                                 photometric=CFA, black=(BLACK_LEVEL,), white=(WHITE_LEVEL,),
                                 exif=((34855, 3, ()), (33437, 5, (8, 1)))))  # fmt: skip
    assert [code for code, _, _ in read_profile(frame).exif] == [33437]  # the empty ISO left out


def test_bad_input_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(StackerError, match="16-bit"):
        write_linear_dng(
            tmp_path / "x.dng", np.zeros((4, 4, 3), np.uint8), synthetic_profile(), software="x"
        )
    with pytest.raises(StackerError, match="CFA layout 'RGBG'"):
        encode_bayer_dng(np.zeros((4, 4, 3), np.uint16), "RGBG")


@pytest.mark.parametrize("ext", [".dng", ".tif", ".jpg"])
def test_a_frames_artist_and_copyright_go_into_ifd0_of_the_result(tmp_path: Path, ext) -> None:
    """Artist (315) and Copyright (33432) are IFD0 tags (TIFF 6.0; EXIF 2.32, 4.6.4 A): a stack
    of RAW frames that name their photographer lost both, in the DNG and in the renderings."""
    from stacker.dng import CFA, encode_dng, profile_tags
    from stacker.metadata import read_metadata
    from stacker.raw import write_raw_result
    from stacker.tiff_exif import camera_tags

    owner = [(315, "s", 0, "Ada Lovelace", True), (33432, "s", 0, "(c) 2026 Ada Lovelace", True)]
    cfa_tags = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)]
    frame = tmp_path / "frame.dng"
    frame.write_bytes(encode_dng(np.full((32, 32), 4000, np.uint16),
                                 profile_tags(synthetic_profile()) + cfa_tags + owner,  # type: ignore[arg-type]
                                 photometric=CFA, black=(BLACK_LEVEL,), white=(WHITE_LEVEL,),
                                 exif=synthetic_profile().exif, software="camera"))  # fmt: skip
    out = write_raw_result(tmp_path / f"stacked{ext}", read_raw_linear(frame), frame,
                           software="stackrig")  # fmt: skip
    if ext == ".jpg":
        exif = read_metadata(out).exif
        assert exif is not None
        ifd0 = {tag: value for tag, _, _, value, _ in camera_tags(exif)}
        assert ifd0[315] == b"Ada Lovelace\0" and ifd0[33432] == b"(c) 2026 Ada Lovelace\0"
        return
    tags, exif_ifd = tags_of(out.read_bytes())
    assert tags["Artist"] == "Ada Lovelace" and tags["Copyright"] == "(c) 2026 Ada Lovelace"
    assert not {"Artist", "Copyright"} & set(exif_ifd)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "model", "unique"),
    [
        ("Canon", "Canon EOS R5", "Canon EOS R5"),
        ("NIKON CORPORATION", "NIKON D850", "NIKON D850"),
        ("SONY", "ILCE-7RM5", "SONY ILCE-7RM5"),
        ("FUJIFILM", "X-T3", "FUJIFILM X-T3"),
        ("", "", "stackrig"),
    ],
)
def test_the_camera_name_says_the_make_once(make: str, model: str, unique: str) -> None:
    """UniqueCameraModel was "Canon Canon EOS R5" for a Canon: its model begins with the make."""
    profile = ColourProfile(make, model, np.eye(3), (1.0, 1.0, 1.0))
    assert profile.camera_name == unique
