import numpy as np
import pytest

from tpc.so3 import _cache, wigner_3j


def test_large_tables_go_to_disk_and_reload(tmp_path, monkeypatch):
    monkeypatch.setenv("TPC_CACHE", str(tmp_path))
    wigner_3j.cache_clear()
    first = wigner_3j(9, 8, 7)
    files = list((tmp_path / "so3").glob("wigner_3j-*-9_8_7.npy"))
    assert len(files) == 1
    wigner_3j.cache_clear()
    np.testing.assert_array_equal(wigner_3j(9, 8, 7), first)
    assert not list((tmp_path / "so3").glob("wigner_3j-*-1_1_2.npy"))
    wigner_3j(1, 1, 2)
    assert not list((tmp_path / "so3").glob("wigner_3j-*-1_1_2.npy"))


def test_corrupt_cache_file_is_recomputed_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TPC_CACHE", str(tmp_path))
    wigner_3j.cache_clear()
    expected = wigner_3j(10, 8, 6).copy()
    (path,) = (tmp_path / "so3").glob("wigner_3j-*-10_8_6.npy")
    path.write_bytes(path.read_bytes()[:100])
    wigner_3j.cache_clear()
    with pytest.warns(UserWarning, match="unreadable"):
        recovered = wigner_3j(10, 8, 6)
    np.testing.assert_array_equal(recovered, expected)
    wigner_3j.cache_clear()
    np.testing.assert_array_equal(np.load(path), expected)


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TPC_CACHE", str(tmp_path))
    assert _cache.cache_dir() == tmp_path / "so3"
