"""Folders (pigeon/mailstore/folders.py): Maildir++ names, create/delete/rename,
special use, subscriptions."""

from __future__ import annotations

import os

import pytest

from pigeon.mailstore.errors import FolderError


def names(user):
    return {f.name: f.attributes for f in user.list_folders()}


def test_first_use_creates_special_use_folders(user):
    found = names(user)
    assert list(found)[0] == "INBOX"
    for name, attr in [
        ("Sent", "\\Sent"),
        ("Drafts", "\\Drafts"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
    ]:
        assert attr in found[name]
        assert os.path.isdir(os.path.join(user.maildir, "." + name, "cur"))
        assert os.path.exists(os.path.join(user.maildir, "." + name, "maildirfolder"))
    assert {"Sent", "Drafts", "Trash", "Junk"} <= set(user.subscriptions())
    user.create("Archive")
    assert "\\Archive" in names(user)["Archive"]


def test_hierarchy_maps_to_maildir_plus_plus(user):
    user.create("Work/Projects/Pigeon")
    assert os.path.isdir(os.path.join(user.maildir, ".Work.Projects.Pigeon", "cur"))
    assert os.path.isdir(os.path.join(user.maildir, ".Work.Projects", "cur"))  # superiors too
    found = names(user)
    assert "\\HasChildren" in found["Work"]
    assert "\\HasNoChildren" in found["Work/Projects/Pigeon"]
    assert user.open("Work/Projects/Pigeon/").name == "Work/Projects/Pigeon"
    with pytest.raises(FolderError):
        user.open("work/projects/pigeon")  # only INBOX is case-insensitive


def test_utf8_names_on_disk(user):
    user.create("Entwürfe/2024")
    assert ".Entwürfe.2024" in os.listdir(user.maildir)
    assert "Entwürfe/2024" in names(user)


def test_parent_known_only_from_its_children_is_noselect(user):
    os.makedirs(os.path.join(user.maildir, ".Lists.pigeon", "cur"))  # made by another tool
    found = names(user)
    assert {"\\Noselect", "\\HasChildren"} <= found["Lists"]
    with pytest.raises(FolderError):
        user.open("Lists")
    user.open("Lists/pigeon")


@pytest.mark.parametrize("bad", ["", "a//b", "/a", "a.b", "INBOX/x", "tab\there", "a" * 300])
def test_bad_names(user, bad):
    with pytest.raises(FolderError):
        user.create(bad)


def test_create_existing_and_inbox(user):
    user.create("X")
    with pytest.raises(FolderError):
        user.create("X")
    with pytest.raises(FolderError):
        user.create("inbox")


def test_delete(user, deliver):
    user.create("Old/Child")
    deliver(os.path.join(user.maildir, ".Old"))
    user.delete("Old")
    found = names(user)
    assert "\\Noselect" in found["Old"]  # RFC 9051 §6.3.5: the child stays
    assert "Old/Child" in found
    assert not any(e.startswith("..") for e in os.listdir(user.maildir))
    with pytest.raises(FolderError):
        user.delete("Old")  # \Noselect: nothing to delete
    with pytest.raises(FolderError):
        user.delete("INBOX")
    with pytest.raises(FolderError):
        user.delete("Nope")


def test_delete_then_create_gets_a_new_uidvalidity(user, deliver):
    user.create("Box")
    deliver(os.path.join(user.maildir, ".Box"))
    first = user.open("Box")
    assert len(first.messages) == 1
    validity = first.uidvalidity
    user.delete("Box")
    user.create("Box")
    again = user.open("Box")
    assert again.messages == [] and again.uidvalidity != validity


def test_rename_moves_children_and_keeps_uids(user, deliver):
    user.create("A/B")
    deliver(os.path.join(user.maildir, ".A.B"))
    before = user.open("A/B")
    uid, validity = before.messages[0].uid, before.uidvalidity
    user.rename("A", "Z")
    found = names(user)
    assert "A" not in found and "A/B" not in found
    assert "Z" in found and "Z/B" in found
    after = user.open("Z/B")
    assert (after.messages[0].uid, after.uidvalidity) == (uid, validity)
    user.rename("Z/B", "New/Deep/B")
    assert "\\Noselect" not in names(user)["New/Deep"]  # superiors made (RFC 9051 §6.3.6)
    assert user.open("New/Deep/B").messages[0].uid == uid
    with pytest.raises(FolderError):
        user.rename("Z", "Sent")
    with pytest.raises(FolderError):
        user.rename("Nope", "Other")


def test_rename_inbox_moves_its_messages(user, deliver):
    deliver(user.maildir)
    deliver(user.maildir)
    user.rename("INBOX", "Old Mail")
    assert user.open("INBOX").messages == []
    assert len(user.open("Old Mail").messages) == 2


def test_subscriptions(user):
    user.subscribe("Work")
    user.subscribe("Work")
    user.subscribe("Not/Yet/There")  # RFC 9051 §6.3.7 allows it
    subs = user.subscriptions()
    assert subs.count("Work") == 1 and "Not/Yet/There" in subs
    user.unsubscribe("Work")
    assert "Work" not in user.subscriptions()
    with pytest.raises(FolderError):
        user.unsubscribe("Work")
    with open(os.path.join(user.maildir, "subscriptions")) as f:
        assert "Not.Yet.There\n" in f.read().splitlines(keepends=True)  # as Dovecot writes it


def test_dovecot_version_2_subscriptions_are_read(user):
    with open(os.path.join(user.maildir, "subscriptions"), "w") as f:
        f.write("V\t2\n\nSent\nArchive\t2024\n")
    assert user.subscriptions() == ["Sent", "Archive/2024"]


def test_state_files_are_private(user, deliver):
    deliver(user.maildir)
    inbox = user.open("INBOX")
    inbox.set_flags([1], ["kw"], "add")
    user.subscribe("X")
    for name in ("pigeon-uidlist", "dovecot-keywords", "subscriptions", ".Sent/maildirfolder"):
        assert os.stat(os.path.join(user.maildir, name)).st_mode & 0o777 == 0o600, name
