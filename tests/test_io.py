import os

import numpy as np
import pytest

from hygie_lib.io import HygieError, atomic_path, require_file, save_npz


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".txt" and tmp != target
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert list(target.parent.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_save_npz_is_byte_deterministic_and_loads(tmp_path):
    arrays = {"a": np.arange(10, dtype=np.float32), "b": np.ones((2, 3), np.uint8)}
    save_npz(tmp_path / "x.npz", **arrays)
    first = (tmp_path / "x.npz").read_bytes()
    save_npz(tmp_path / "x.npz", **arrays)
    assert (tmp_path / "x.npz").read_bytes() == first
    loaded = np.load(tmp_path / "x.npz")
    assert set(loaded.files) == {"a", "b"}
    np.testing.assert_array_equal(loaded["a"], arrays["a"])


def test_require_file_names_file_and_fix(tmp_path):
    with pytest.raises(HygieError, match=r"nope\.mp4: video not found\. Do this"):
        require_file(tmp_path / "nope.mp4", "video", "Do this.")
