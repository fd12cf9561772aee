"""What a path names as SavedModel versions: one owner (tf_mlp.layout) for the client and the export listing."""

import pytest

from tf_mlp import layout
from tf_mlp.client import errors
from tf_mlp.client.exports import version_dirs
from tf_mlp.client.local import resolve_version_dir
from tf_mlp.errors import ExportError


def _saved_model(directory):
    directory.mkdir(parents=True)
    (directory / layout.SAVED_MODEL_FILE).write_bytes(b"")
    return directory


def test_a_version_directory_a_model_base_and_an_export_base_name_the_same_versions(tmp_path):
    base = tmp_path / "exports" / "tf_mlp"
    one, seven = _saved_model(base / "1"), _saved_model(base / "007")
    (base / "3").mkdir()  # incomplete: no saved_model.pb
    _saved_model(base / ".export-9")  # staging, not a version
    assert layout.saved_model_versions(base, "tf_mlp") == {1: one, 7: seven}
    assert layout.saved_model_versions(tmp_path / "exports", "tf_mlp") == {1: one, 7: seven}
    assert layout.saved_model_versions(seven, "tf_mlp") == {7: seven}
    assert layout.saved_model_versions(_saved_model(tmp_path / "plain"), "tf_mlp") == {0: tmp_path / "plain"}
    assert layout.saved_model_versions(tmp_path / "missing", "tf_mlp") == {}


def test_the_client_and_the_export_listing_resolve_a_zero_padded_version_to_its_own_directory(tmp_path):
    seven = _saved_model(tmp_path / "tf_mlp" / "007")
    _saved_model(tmp_path / "tf_mlp" / "2")
    assert resolve_version_dir(tmp_path, "tf_mlp", None) == (seven, 7)
    assert resolve_version_dir(tmp_path / "tf_mlp", "tf_mlp", 7) == (seven, 7)
    assert version_dirs(tmp_path) == [(2, tmp_path / "tf_mlp" / "2"), (7, seven)]


def test_missing_versions_are_named(tmp_path):
    _saved_model(tmp_path / "tf_mlp" / "2")
    with pytest.raises(errors.NotFoundError, match=r"no version 5 of model tf_mlp in .*tf_mlp \(versions: 2\)"):
        resolve_version_dir(tmp_path, "tf_mlp", 5)
    with pytest.raises(errors.NotFoundError, match="is version 2, not 5"):
        resolve_version_dir(tmp_path / "tf_mlp" / "2", "tf_mlp", 5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no SavedModel in"):
        version_dirs(tmp_path / "empty")
    with pytest.raises(errors.NotFoundError, match="no SavedModel in"):
        resolve_version_dir(tmp_path / "empty", "tf_mlp", None)
