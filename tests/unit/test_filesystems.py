"""The filesystem classification of `modulatio doctor` (modulatio_d/core/filesystems.py),
from mountinfo lines as the kernel writes them; and the free space and inode verdicts."""

from __future__ import annotations

import pytest

from modulatio_d.core.filesystems import (
    Tier,
    Verdict,
    classify,
    client_cache_seconds,
    mount_for,
    parse_mountinfo,
    sync_marker,
)
from modulatio_d.ops.doctor.space import judge_inodes, judge_space

MOUNTINFO = r"""22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard,resv_strict
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
40 22 0:35 / /tmp rw,nosuid,nodev shared:20 - tmpfs tmpfs rw,size=1048576k,inode64
53 22 0:42 / /mnt/vault-shared rw,relatime - fuse.glusterfs 10.77.0.1:tbvol rw,user_id=0,group_id=0,default_permissions,allow_other,max_read=131072
60 22 0:50 / /srv/nfs rw,relatime shared:30 - nfs4 files:/export rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.1.0.2,local_lock=none,addr=10.1.0.1
61 22 0:51 / /srv/old rw,relatime - nfs files:/old rw,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,nolock,proto=tcp,timeo=600,retrans=2,sec=sys,mountaddr=10.1.0.1,mountvers=3,mountport=20048,mountproto=udp,local_lock=all,addr=10.1.0.1
62 22 0:52 / /home/ann/remote\040vault rw,nosuid,nodev,relatime - fuse.sshfs ann@box:/vault rw,user_id=1000,group_id=1000
63 22 0:53 / /srv/smb rw,relatime - cifs //files/share rw,vers=3.1.1,cache=strict,username=svc,uid=0,noforceuid,gid=0,noforcegid,addr=10.1.0.1,file_mode=0755,dir_mode=0755,soft,nounix,serverino,mapposix,rsize=4194304,wsize=4194304,bsize=1048576,echo_interval=60,actimeo=1
64 22 0:54 / /srv/ceph rw,relatime - ceph 10.1.0.1:6789:/ rw,name=admin,secret=<hidden>,acl
65 22 0:55 / /srv/jfs rw,relatime - fuse.juicefs JuiceFS:jfs rw,user_id=0,group_id=0,default_permissions,allow_other
66 22 0:56 / /srv/odd rw,relatime - fuse.mystery src rw
67 53 0:57 / /mnt/vault-shared/inner rw,relatime - xfs /dev/vdb rw
68 22 0:58 / /tmp rw,relatime - btrfs /dev/vdc rw,space_cache=v2
"""
MOUNTS = parse_mountinfo(MOUNTINFO)


def at(path: str):
    m = mount_for(MOUNTS, path)
    assert m is not None
    return m


def test_parse_reads_type_source_point_and_both_option_lists():
    m = at("/mnt/vault-shared/vault")
    assert (m.fstype, m.source, m.point) == ("fuse.glusterfs", "10.77.0.1:tbvol",
                                            "/mnt/vault-shared")
    assert m.option("relatime") == "" and m.option("allow_other") == ""
    assert m.option("max_read") == "131072" and m.option("nolock") is None


def test_escaped_blanks_in_mount_points_are_decoded():
    assert at("/home/ann/remote vault/v").fstype == "fuse.sshfs"


def test_the_longest_mount_point_on_a_path_boundary_wins():
    assert at("/mnt/vault-shared/inner/v").fstype == "xfs"
    assert at("/mnt/vault-shared").fstype == "fuse.glusterfs"
    assert at("/mnt/vault-sharedX/v").fstype == "ext4"  # not under /mnt/vault-shared
    assert at("/").fstype == "ext4"


def test_of_two_mounts_on_one_point_the_later_is_on_top():
    assert at("/tmp/v").fstype == "btrfs"


def test_malformed_lines_are_skipped():
    assert parse_mountinfo("garbage\n1 2 3\n\n") == []
    assert mount_for([], "/x") is None


@pytest.mark.parametrize("path, tier, verdict, says", [
    ("/srv/v", Tier.LOCAL, Verdict.OK, "local disk"),
    ("/mnt/vault-shared/v", Tier.SHARED, Verdict.CAVEAT, "GlusterFS"),
    ("/srv/jfs/v", Tier.SHARED, Verdict.CAVEAT, "JuiceFS"),
    ("/srv/ceph/v", Tier.SHARED, Verdict.CAVEAT, "CephFS"),
    ("/srv/nfs/v", Tier.SHARED, Verdict.CAVEAT, "NFSv4.2"),
    ("/srv/old/v", Tier.REFUSED, Verdict.UNSAFE, "nolock"),
    ("/home/ann/remote vault", Tier.REFUSED, Verdict.UNSAFE, "sshfs"),
    ("/srv/smb/v", Tier.SHARED, Verdict.CAVEAT, "SMB"),
    ("/srv/odd/v", Tier.UNKNOWN, Verdict.CAVEAT, "fuse.mystery"),
])
def test_classification(path, tier, verdict, says):
    fs = classify(at(path))
    assert (fs.tier, fs.verdict) == (tier, verdict)
    assert says in fs.name
    assert fs.other_hosts_invisible_to_inotify == (tier is not Tier.LOCAL)


def test_tmpfs_is_local_with_a_caveat_it_is_memory():
    mounts = parse_mountinfo("40 22 0:35 / /tmp rw - tmpfs tmpfs rw,size=1048576k\n")
    fs = classify(at_in(mounts, "/tmp/v"))
    assert (fs.tier, fs.verdict) == (Tier.LOCAL, Verdict.CAVEAT)
    assert "lost when the machine restarts" in fs.why


def at_in(mounts, path):
    m = mount_for(mounts, path)
    assert m is not None
    return m


def nfs(options: str, fstype: str = "nfs4"):
    line = f"60 22 0:50 / /srv/n rw,relatime - {fstype} files:/e rw,{options}\n"
    return classify(at_in(parse_mountinfo(line), "/srv/n/v"))


@pytest.mark.parametrize("options", ["vers=4.2,local_lock=flock", "vers=4.1,local_lock=all",
                                     "vers=3,nolock"])
def test_nfs_whose_flock_stays_on_the_host_is_refused(options):
    fs = nfs(options)
    assert (fs.tier, fs.verdict) == (Tier.REFUSED, Verdict.UNSAFE)
    assert "two hosts would run the same plan" in fs.why


def test_nfs_notes():
    assert "lockf is not protected" in nfs("vers=4.2,local_lock=posix").why
    assert nfs("vers=4.2,local_lock=posix").verdict is Verdict.CAVEAT
    assert "lockd" in nfs("vers=3,local_lock=none", "nfs").why
    assert "4.0" in nfs("local_lock=none").why  # nfs4 without vers= is 4.0
    assert "4.0" not in nfs("vers=4.2,local_lock=none").why
    assert "soft" in nfs("vers=4.2,soft").why


def test_smb_with_nobrl_is_refused():
    line = "63 22 0:53 / /srv/s rw - smb3 //f/s rw,vers=3.1.1,nobrl\n"
    fs = classify(at_in(parse_mountinfo(line), "/srv/s"))
    assert (fs.tier, fs.verdict) == (Tier.REFUSED, Verdict.UNSAFE)


@pytest.mark.parametrize("names, client", [
    ([".stfolder", "plans"], "Syncthing"),
    ([".dropbox", "x"], "Dropbox"),
    ([".dropbox.cache"], "Dropbox"),
    ([".sync_3f2a9c1b.db"], "Nextcloud"),
    (["._sync_3f2a9c1b.db"], "Nextcloud"),
    ([".owncloudsync.log"], "Nextcloud"),
])
def test_sync_folder_markers(names, client):
    found = sync_marker(names)
    assert found is not None and found.startswith(client)


def test_ordinary_folders_have_no_sync_marker():
    assert sync_marker([".modulatio", "P", ".git", ".sync", "sync_notes.db"]) is None


def test_client_cache_timeouts_from_the_client_command_line():
    gluster = ["/usr/sbin/glusterfs", "--process-name", "fuse", "--volfile-server=s",
               "--volfile-id=v", "--attribute-timeout=0", "--entry-timeout", "0.5", "/mnt/x"]
    assert client_cache_seconds("fuse.glusterfs", gluster) == {"attribute-timeout": 0.0,
                                                               "entry-timeout": 0.5}
    assert client_cache_seconds("fuse.glusterfs", ["glusterfs", "/mnt/x"]) == {
        "attribute-timeout": None, "entry-timeout": None}
    juice = ["juicefs", "mount", "redis://r/1", "/srv/jfs", "--attr-cache=0",
             "--entry-cache=0", "--dir-entry-cache", "2"]
    assert client_cache_seconds("fuse.juicefs", juice) == {
        "attr-cache": 0.0, "entry-cache": 0.0, "dir-entry-cache": 2.0}
    assert client_cache_seconds("ext4", ["x"]) == {}


@pytest.mark.parametrize("avail_mib, verdict", [(8, Verdict.UNSAFE), (100, Verdict.CAVEAT),
                                                (4096, Verdict.OK)])
def test_free_space(avail_mib, verdict):
    assert judge_space(avail_mib * 2**20, 10 * 2**30)[0] is verdict


@pytest.mark.parametrize("free, total, verdict", [(50, 10**6, Verdict.UNSAFE),
                                                  (5000, 10**6, Verdict.CAVEAT),
                                                  (10**5, 10**6, Verdict.OK),
                                                  (0, 0, Verdict.OK)])
def test_inodes(free, total, verdict):
    assert judge_inodes(free, total)[0] is verdict
