"""Output paths: checked before the work without side effects; failed writes are one-line errors."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from scaleplan.errors import ScaleplanError
from scaleplan.outputs import ensure_writable, save_figure, writing


def test_ensure_writable_accepts_a_new_folder_only_where_one_may_be_made_and_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "law.json"
    assert ensure_writable(target, "law file") == target  # a folder output: made on writing
    with pytest.raises(ScaleplanError, match=f"folder {tmp_path / 'a' / 'b'} does not exist \\(create it first\\)"):
        ensure_writable(target, "law file", make_folder=False)  # an -o FILE output
    assert ensure_writable(tmp_path / "law.json", "law file", make_folder=False) == tmp_path / "law.json"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("folder", "it is a directory"),
        ("data.csv/law.json", "data.csv is a file, not a directory"),
        ("data.csv/deeper/law.json", "data.csv is a file, not a directory"),
    ],
)
def test_ensure_writable_names_the_problem(tmp_path: Path, relative: str, reason: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "data.csv").write_text("x\n")
    with pytest.raises(ScaleplanError, match=f"cannot write law file to {tmp_path / relative}: .*{reason}; choose a writable path"):
        ensure_writable(tmp_path / relative, "law file")


def test_writing_makes_the_folder(tmp_path: Path) -> None:
    with writing(tmp_path / "plots" / "p.png", "plot") as out:
        out.write_bytes(b"png")
    assert (tmp_path / "plots" / "p.png").read_bytes() == b"png"


def test_writing_turns_an_os_error_into_one_line(tmp_path: Path) -> None:
    with pytest.raises(ScaleplanError, match=r"cannot write trials to .*t\.csv: No space left on device; choose a writable path"):
        with writing(tmp_path / "t.csv", "trials"):
            raise OSError(28, "No space left on device")


def test_a_write_that_fails_midway_leaves_the_old_file_whole_and_nothing_beside_it(tmp_path: Path) -> None:
    law = tmp_path / "law.json"
    law.write_text('{"old": 1}\n')
    with pytest.raises(ScaleplanError, match="No space left on device"):
        with writing(law, "law file") as part:
            part.write_text('{"new": ')  # half of the new file, then the disk fills
            raise OSError(28, "No space left on device")
    with pytest.raises(KeyboardInterrupt):  # a kill between writes: the same
        with writing(law, "law file") as part:
            part.write_text('{"new": ')
            raise KeyboardInterrupt
    assert law.read_text() == '{"old": 1}\n' and [p.name for p in tmp_path.iterdir()] == ["law.json"]


def test_a_whole_write_replaces_the_file_keeping_its_permissions_and_its_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "law.json"
    link.symlink_to(real)
    with writing(link, "law file") as part:
        assert part.suffix == ".json"  # writers that go by the suffix (savefig, parquet) see the real one
        part.write_text("new\n")
    assert link.is_symlink() and real.read_text() == "new\n" and real.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["law.json", "real.json"]


def test_save_figure_writes_a_png_closes_the_figure_and_names_a_bad_path(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, _ = plt.subplots()
    path = save_figure(fig, tmp_path / "plots" / "f.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not plt.get_fignums()
    (tmp_path / "a-file").write_text("")
    fig, _ = plt.subplots()
    with pytest.raises(ScaleplanError, match="cannot write plot to .*a-file/f.png: .*a-file is a file, not a directory"):
        save_figure(fig, tmp_path / "a-file" / "f.png", dpi=50)
    assert not plt.get_fignums()


def test_a_pipe_is_written_to_not_replaced(tmp_path: Path) -> None:
    """`-o /dev/stdout` or a named pipe: the output is streamed into it; replacing it would destroy it."""
    fifo = tmp_path / "law.json"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    with writing(fifo, "law file") as target:
        target.write_text('{"name": "x"}')
    reader.join(timeout=10)
    assert received == ['{"name": "x"}'] and stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["law.json"]
