"""Credentials never shown: every form of a password in storage URLs and in free text."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.errors import StorageError
from hpo.secrets import mask, redact
from hpo.spec import load_spec_text
from hpo.storage import open_storage
from hpo.study import SPEC_ATTR, create_study

from .conftest import TINY_SPEC


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://hpo:s3cret@db:5432/hpo", "postgresql://hpo:***@db:5432/hpo"),
        ("postgresql://hpo:p%40ss%3Aw@db/hpo", "postgresql://hpo:***@db/hpo"),
        (
            "postgresql://db/hpo?user=hpo&password=s3cret",
            "postgresql://db/hpo?user=hpo&password=***",
        ),
        ("mysql://u@db/x?sslmode=on&PWD=a%20b", "mysql://u@db/x?sslmode=on&PWD=***"),
        ("postgresql://hpo@db/hpo", "postgresql://hpo@db/hpo"),
        # SQLAlchemy takes a password up to the '@': '/', '?' and '#' belong to it.
        ("postgresql://alice:s3cr/et@127.0.0.1:1/db", "postgresql://alice:***@127.0.0.1:1/db"),
        ("mysql://alice:s3c#ret@db/x", "mysql://alice:***@db/x"),
        ("postgresql://a:p?w@db/x?sslpassword=k", "postgresql://a:***@db/x?sslpassword=***"),
        ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("sqlite:///studies/hpo.db", "sqlite:///studies/hpo.db"),
        ("journal:studies/x.log", "journal:studies/x.log"),
        # An empty host keeps its slashes: the masked URL still names the same file.
        ("sqlite:////tmp/a.db?password=x", "sqlite:////tmp/a.db?password=***"),
        ("sqlite:///a.db?password=x#f", "sqlite:///a.db?password=***#f"),
    ],
)
def test_mask_hides_every_form_of_password(url: str, masked: str) -> None:
    assert mask(url) == masked


def test_redact_hides_a_password_however_free_text_spells_it() -> None:
    url = "postgresql://hpo:p%40ss@db/hpo?password=q%2Fw"
    text = 'FATAL: password "p@ss" rejected; tried p%40ss and q/w and q%2Fw'
    assert redact(text, url) == 'FATAL: password "***" rejected; tried *** and *** and ***'
    assert redact("nothing here", url) == "nothing here"
    assert redact("pw s3cr/et", "postgresql://alice:s3cr/et@db/x") == "pw ***"
    assert redact("no url", None) == "no url"
    # a short password is hidden where it stands alone, not inside the words around it
    assert (
        redact("(pymysql.err.OperationalError) password p for u:p@db", "mysql://u:p@db/x")
        == "(pymysql.err.OperationalError) password *** for u:***@db"
    )


def test_an_unreachable_storage_names_it_without_the_password() -> None:
    with pytest.raises(StorageError) as err:
        open_storage("postgresql://hpo:topsecret@127.0.0.1:1/hpo?password=other")
    message = str(err.value)
    assert "topsecret" not in message and "other" not in message
    assert "postgresql://hpo:***@127.0.0.1:1/hpo?password=***" in message


def test_the_stored_spec_keeps_no_credentials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    text = TINY_SPEC.replace(
        "seed = 3", 'seed = 3\nstorage = "postgresql://hpo:s3cret@db/hpo?password=s3cret"'
    )
    study = create_study(load_spec_text(text), url)
    stored = optuna.load_study(study_name="tiny", storage=url).user_attrs[SPEC_ATTR]
    assert "s3cret" not in stored
    assert 'storage = "postgresql://hpo:***@db/hpo?password=***"' in stored
    assert study.study_name == "tiny"
