"""Tests of btnet_core.formats.pairs: LFW pairs.txt and CSV pair lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from btnet_core.errors import DataError, FormatError
from btnet_core.formats.pairs import read_pairs_csv, read_pairs_txt

ORL = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "orl"


def lfw_folder(root: Path, suffix: str = ".jpg") -> Path:
    """Alice with images 1-2, Bob with image 1, in LFW's name/name_NNNN layout."""
    for name, count in (("Alice_Smith", 2), ("Bob", 1)):
        (root / name).mkdir(parents=True)
        for i in range(1, count + 1):
            (root / name / f"{name}_{i:04d}{suffix}").write_bytes(b"image")
    return root


def test_pairs_txt_reads_same_and_different_lines(tmp_path: Path) -> None:
    """'name i j' is a same pair, 'name1 i name2 j' a different one; the header '1 1' announces
    one fold of one pair each."""
    root = lfw_folder(tmp_path / "lfw")
    listing = tmp_path / "pairs.txt"
    listing.write_text("1\t1\nAlice_Smith\t1\t2\nAlice_Smith\t2\tBob\t1\n")
    first, second, same = read_pairs_txt(listing, root)
    assert first == [root / "Alice_Smith" / "Alice_Smith_0001.jpg"] + [
        root / "Alice_Smith" / "Alice_Smith_0002.jpg"
    ]
    assert second == [root / "Alice_Smith" / "Alice_Smith_0002.jpg", root / "Bob" / "Bob_0001.jpg"]
    assert same.tolist() == [True, False]


def test_pairs_txt_accepts_indices_written_as_floats(tmp_path: Path) -> None:
    """Indices like '1.' and '2.0' are whole numbers and read as such."""
    root = lfw_folder(tmp_path / "lfw")
    listing = tmp_path / "pairs.txt"
    listing.write_text("Alice_Smith 1. 2.0\n")
    first, second, _ = read_pairs_txt(listing, root)
    assert first[0].name == "Alice_Smith_0001.jpg" and second[0].name == "Alice_Smith_0002.jpg"


def test_pairs_txt_refuses_a_fractional_index(tmp_path: Path) -> None:
    """'1.5' names no image: one FormatError with the line number."""
    root = lfw_folder(tmp_path / "lfw")
    listing = tmp_path / "pairs.txt"
    listing.write_text("Alice_Smith 1.5 2\n")
    with pytest.raises(FormatError, match=r"pairs\.txt:1: image index '1\.5'"):
        read_pairs_txt(listing, root)


def test_pairs_txt_finds_the_image_suffix(tmp_path: Path) -> None:
    """Without ext the suffix is found from the first image (.png here); ext forces one."""
    root = lfw_folder(tmp_path / "lfw", suffix=".png")
    listing = tmp_path / "pairs.txt"
    listing.write_text("Alice_Smith 1 2\n")
    assert read_pairs_txt(listing, root)[0][0].suffix == ".png"
    with pytest.raises(DataError, match="not found"):
        read_pairs_txt(listing, root, ext=".jpg")


def test_pairs_txt_names_a_missing_image(tmp_path: Path) -> None:
    """A pair naming an image that is not there: one DataError with file, line and path."""
    root = lfw_folder(tmp_path / "lfw")
    listing = tmp_path / "pairs.txt"
    listing.write_text("Alice_Smith 1 2\nBob 1 Alice_Smith 7\n")
    with pytest.raises(DataError, match=r"pairs\.txt:2: image .*Alice_Smith_0007\.jpg not found"):
        read_pairs_txt(listing, root)


def test_pairs_txt_checks_the_announced_count(tmp_path: Path) -> None:
    """Header '10 300' announces 6000 pairs; a file with one is refused."""
    root = lfw_folder(tmp_path / "lfw")
    listing = tmp_path / "pairs.txt"
    listing.write_text("10 300\nAlice_Smith 1 2\n")
    with pytest.raises(FormatError, match="announces 6000 pairs but the file lists 1"):
        read_pairs_txt(listing, root)


def test_pairs_txt_refuses_a_malformed_line(tmp_path: Path) -> None:
    """A line of five fields is neither pair form: FormatError with the line number."""
    root = lfw_folder(tmp_path / "lfw")
    listing = tmp_path / "pairs.txt"
    listing.write_text("Alice_Smith 1 2\nA 1 B 2 C\n")
    with pytest.raises(FormatError, match=r"pairs\.txt:2: expected 'name i j'"):
        read_pairs_txt(listing, root)


def image_folder(root: Path) -> Path:
    for name in ("a/1.png", "a/2.png", "b/1.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"image")
    return root


def test_pairs_csv_without_header(tmp_path: Path) -> None:
    """Rows img1,img2,same with flags 1/0, true/false, yes/no (any case)."""
    root = image_folder(tmp_path / "imgs")
    listing = tmp_path / "pairs.csv"
    listing.write_text("a/1.png,a/2.png,1\na/1.png,b/1.png,False\na/2.png,a/1.png,YES\n")
    first, second, same = read_pairs_csv(listing, root)
    assert first == [root / "a/1.png", root / "a/1.png", root / "a/2.png"]
    assert second[1] == root / "b/1.png"
    assert same.tolist() == [True, False, True]


def test_pairs_csv_header_picks_columns_by_name(tmp_path: Path) -> None:
    """A header row names the columns, in any order and with extra columns."""
    root = image_folder(tmp_path / "imgs")
    listing = tmp_path / "pairs.csv"
    listing.write_text("issame,note,image2,image1\n0,x,b/1.png,a/1.png\n")
    first, second, same = read_pairs_csv(listing, root)
    assert (first, second, same.tolist()) == ([root / "a/1.png"], [root / "b/1.png"], [False])


def test_pairs_csv_refuses_a_header_without_a_flag_column(tmp_path: Path) -> None:
    """A header lacking the flag column is named with the accepted names."""
    root = image_folder(tmp_path / "imgs")
    listing = tmp_path / "pairs.csv"
    listing.write_text("img1,img2,score\na/1.png,a/2.png,0.3\n")
    with pytest.raises(FormatError, match=r"pairs\.csv:1: the header has no same column"):
        read_pairs_csv(listing, root)


def test_pairs_csv_refuses_a_bad_flag(tmp_path: Path) -> None:
    """A flag that is not a bool is named with its line."""
    root = image_folder(tmp_path / "imgs")
    listing = tmp_path / "pairs.csv"
    listing.write_text("a/1.png,a/2.png,1\na/1.png,b/1.png,maybe\n")
    with pytest.raises(FormatError, match=r"pairs\.csv:2: same-flag 'maybe'"):
        read_pairs_csv(listing, root)


def test_pairs_csv_names_a_missing_image(tmp_path: Path) -> None:
    """A missing image: one DataError with file, line and path, and the count missing."""
    root = image_folder(tmp_path / "imgs")
    listing = tmp_path / "pairs.csv"
    listing.write_text("a/1.png,a/2.png,1\nc/9.png,a/1.png,0\n")
    with pytest.raises(
        DataError, match=r"pairs\.csv:2: image .*c/9\.png not found \(1 of 3 images"
    ):
        read_pairs_csv(listing, root)


def test_pairs_csv_over_the_orl_folder(tmp_path: Path) -> None:
    """A CSV over a real folder (ORL's sNN/MM.png) reads without any naming convention."""
    if not ORL.is_dir():
        pytest.skip(f"ORL faces not found at {ORL}")
    listing = tmp_path / "orl_pairs.csv"
    listing.write_text("img1,img2,same\ns01/01.png,s01/02.png,1\ns01/01.png,s02/01.png,0\n")
    first, second, same = read_pairs_csv(listing, ORL)
    assert all(p.is_file() for p in first + second)
    assert same.tolist() == [True, False]
