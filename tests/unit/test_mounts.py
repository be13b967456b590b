"""Reading the mount table: which folders are on file systems other machines write to."""

from __future__ import annotations

from pathlib import Path

from stacker.mounts import mount_type, unheard_writes

# /proc/self/mountinfo as proc(5) shows it: optional fields up to "-", then type, source, options.
MOUNTINFO = r"""
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
31 22 0:40 / /mnt/nas rw,relatime shared:9 - nfs4 nas:/photos rw,vers=4.2
32 22 0:41 / /mnt/studio\040share rw,relatime - cifs //studio/tether rw,vers=3.1.1
33 31 8:17 / /mnt/nas/local rw - ext4 /dev/sdb1 rw
34 22 0:42 / /mnt/c rw,noatime - 9p C:\134 rw,aname=drvfs;path=C:\
35 22 0:43 / /run/user/1000/gvfs rw - fuse.gvfsd-fuse gvfsd-fuse rw,user_id=1000
36 22 8:33 / /media/card rw - fuseblk /dev/sdc1 rw,user_id=0
37 22 0:44 / /mnt/bind rw - fuse /srv/other rw,user_id=0
38 22 0:45 / /mnt/nas rw - tmpfs tmpfs rw
"""


def table(tmp_path: Path) -> Path:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO.lstrip())
    return path


def test_the_longest_mount_point_holding_the_folder_names_its_type(tmp_path: Path) -> None:
    info = table(tmp_path)
    assert mount_type("/home/me/tether", info) == "ext4"
    assert mount_type("/mnt/studio share/today", info) == "cifs"  # \040 is a space
    assert mount_type("/mnt/studio", info) == "ext4"  # a prefix of a name is not inside it
    assert mount_type("/mnt/nas/local/frames", info) == "ext4"  # a disk mounted in the share
    assert mount_type("/mnt/nas/frames", info) == "tmpfs"  # mounted over the share later


def test_shares_and_fuse_mounts_are_written_unheard_local_disks_are_not(tmp_path: Path) -> None:
    info = table(tmp_path)
    assert unheard_writes("/mnt/studio share", info) == "cifs"
    assert unheard_writes("/mnt/c/Users/me/Pictures", info) == "9p"  # WSL 2: Windows' drive
    assert unheard_writes("/run/user/1000/gvfs/smb-share:server=nas/x", info) == "fuse.gvfsd-fuse"
    assert unheard_writes("/mnt/bind/x", info) == "fuse"
    assert unheard_writes("/media/card/DCIM", info) is None  # exFAT through FUSE: a local disk
    assert unheard_writes("/home/me/tether", info) is None


def test_no_mount_table_means_nothing_is_known(tmp_path: Path) -> None:
    assert mount_type("/home", tmp_path / "absent") is None
    assert unheard_writes("/home", tmp_path / "absent") is None
