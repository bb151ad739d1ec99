"""The shared tracking set-up's pieces that need no server: owner-only secrets, credentials files, refusals."""

import base64
import hashlib
import hmac
import os
import stat

import pytest

from crossmed.errors import CrossmedError
from crossmed.shared_tracking.accounts import AccountError, add_user, grant, read_credentials
from crossmed.shared_tracking.home import TrackingHome, write_private
from crossmed.shared_tracking.postgres import scram_verifier


def test_secrets_are_generated_once_owner_only_and_kept(tmp_path):
    home = TrackingHome(tmp_path / "home").create()
    first = home.secret("admin-password")
    assert first == home.secret("admin-password") and len(first) >= 32
    assert first != home.secret("postgres-password")
    assert stat.S_IMODE(os.stat(home.secrets).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home.secrets / "admin-password").st_mode) == 0o600
    home.save_state({"ports": {"mlflow": 5050}})
    assert home.load_state() == {"ports": {"mlflow": 5050}} and first not in home.state_file.read_text()


def test_a_credentials_file_reads_back_as_the_mlflow_variables(tmp_path):
    path = tmp_path / "KR.env"
    write_private(path, "export MLFLOW_TRACKING_URI=http://127.0.0.1:5050\nexport MLFLOW_TRACKING_USERNAME=KR\n"
                        "export MLFLOW_TRACKING_PASSWORD='p-w_1'\nexport OTHER=x\n")
    assert read_credentials(path) == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5050", "MLFLOW_TRACKING_USERNAME": "KR",
                                      "MLFLOW_TRACKING_PASSWORD": "p-w_1"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_scram_verifier_is_the_one_postgresql_checks_a_password_against():
    verifier = scram_verifier("correct horse")
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", b"correct horse", base64.b64decode(salt), int(iterations))
    assert method == "SCRAM-SHA-256" and iterations == "4096" and len(base64.b64decode(salt)) == 16
    assert stored_key == hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    assert server_key == hmac.new(salted, b"Server Key", "sha256").digest()
    assert scram_verifier("correct horse") != verifier  # a new salt each time


@pytest.mark.parametrize("name", ["admin", "", "-KR", "K R", "KR/../x", "x" * 65])
def test_a_user_name_that_cannot_be_an_account_is_refused_before_any_call(tmp_path, name):
    with pytest.raises(AccountError, match="user name"):
        add_user(TrackingHome(tmp_path).create(), "http://127.0.0.1:9", name)


def test_a_grant_needs_a_known_permission_and_one_target(tmp_path):
    home = TrackingHome(tmp_path).create()
    with pytest.raises(AccountError, match="permission 'WRITE'"):
        grant(home, "http://127.0.0.1:9", "KR", "WRITE", experiment="study")
    with pytest.raises(AccountError, match="one experiment or one registered model"):
        grant(home, "http://127.0.0.1:9", "KR", "READ", experiment="study", model="m")


def test_the_cli_says_how_to_start_the_set_up_when_it_is_not_running(tmp_path, capsys):
    from crossmed.cli import main

    assert main(["tracking", "--home", str(tmp_path / "none"), "user", "add", "KR"]) == 2
    assert "not running: crossmed tracking up" in capsys.readouterr().err
    assert main(["tracking", "--home", str(tmp_path / "none"), "status"]) == 1
    assert "no shared tracking set-up" in capsys.readouterr().out
    with pytest.raises(CrossmedError, match="not a DVC project"):
        from crossmed.shared_tracking.dvc_remote import configure
        from crossmed.shared_tracking.object_store import S3Store

        configure(tmp_path, S3Store("http://127.0.0.1:9", "b", "k", "s"))
