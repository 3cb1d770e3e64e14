"""make install (into a DESTDIR): every program, the library with its
header and pkg-config file, the configuration (mode 0640, never replaced
once edited), the systemd unit and its user, the manual pages (rendered
without a groff warning, stompd.conf(5) naming every key), the cluster
script pointed at its installed configurations; and --version on every
program."""
import os
import re
import shutil
import stat
import subprocess

import pytest

from stompd_test import BUILDDIR, SRCDIR, STOMPD, built_with_sd_notify

PROGRAMS = ["stompd", "stompd-failover-producer", "stompd-failover-consumer", "stompd-bench", "stompd-cluster"]
MAN_PAGES = ["man8/stompd.8", "man5/stompd.conf.5", "man1/stompd-failover-producer.1",
             "man1/stompd-failover-consumer.1", "man1/stompd-bench.1", "man1/stompd-cluster.1", "man3/libstompc.3"]


def make(*args, check=True):
    # a clean environment: this test may run under make check
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    r = subprocess.run(["make", "-C", BUILDDIR] + list(args), env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def make_var(name):
    with open(os.path.join(BUILDDIR, "Makefile")) as f:
        m = re.search(r"^%s = (.*)$" % name, f.read(), re.M)
    return m.group(1)


class Install:
    def __init__(self, dest):
        self.dest = dest
        self.files = sorted(os.path.relpath(os.path.join(d, f), dest)
                            for d, _, fs in os.walk(dest) for f in fs)

    def find(self, suffix):
        hits = [f for f in self.files if f == suffix or f.endswith("/" + suffix)]
        assert len(hits) == 1, (suffix, hits, self.files)
        return os.path.join(self.dest, hits[0])


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = str(tmp_path_factory.mktemp("destdir"))
    make("install", "DESTDIR=" + dest)
    yield Install(dest)
    shutil.rmtree(dest, ignore_errors=True)


def test_every_file_in_its_place(installed):
    print("installed files:\n  " + "\n  ".join(installed.files))
    for p in PROGRAMS:
        f = installed.find("bin/" + p)
        assert os.access(f, os.X_OK), f
    for f in ["include/stompc.h", "lib/libstompc.so", "lib/pkgconfig/stompc.pc", "etc/stompd/stompd.conf",
              "lib/systemd/system/stompd.service", "lib/sysusers.d/stompd.conf",
              "share/stompd/cluster/node1.conf", "share/stompd/cluster/node2.conf",
              "share/stompd/cluster/node3.conf", "share/doc/stompd/README.md", "share/doc/stompd/LICENSE"]:
        installed.find(f)
    for page in MAN_PAGES:
        installed.find("share/man/" + page)
    # nothing of the build or the tests
    assert not [f for f in installed.files if re.search(r"test_|stompc_live|\.o$|\.py$", f)]


def test_the_installed_library_builds_a_program(installed, tmp_path):
    pc = os.path.dirname(installed.find("lib/pkgconfig/stompc.pc"))
    env = dict(os.environ, PKG_CONFIG_PATH=pc, PKG_CONFIG_SYSROOT_DIR=installed.dest)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "stompc"], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    src = tmp_path / "v.c"
    src.write_text('#include <stdio.h>\n#include <stompc.h>\n'
                   'int main(void) { printf("%s %s\\n", STOMPC_VERSION, stompc_version()); return 0; }\n')
    # a sanitizer build's library needs the program built the same way
    san = make_var("SAN_CFLAGS").split()
    subprocess.run(["cc"] + san + [str(src), "-o", str(tmp_path / "v")] + flags, check=True, timeout=60)
    libdir = os.path.dirname(installed.find("lib/libstompc.so"))
    r = subprocess.run([str(tmp_path / "v")], env=dict(os.environ, LD_LIBRARY_PATH=libdir),
                       capture_output=True, text=True, timeout=20)
    version = make_var("PACKAGE_VERSION")
    assert r.stdout == "%s %s\n" % (version, version)


def test_configuration_is_private_and_never_replaced(tmp_path):
    dest = str(tmp_path / "d")
    make("install", "DESTDIR=" + dest)
    conf = Install(dest).find("etc/stompd/stompd.conf")
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o640
    text = open(conf).read()
    # the quick start's relative data_dir is not what a service should use
    assert not re.search(r"^data_dir\s*=", text, re.M)
    assert re.search(r"^# data_dir = /\S+/lib/stompd$", text, re.M)
    r = subprocess.run([STOMPD, "-c", conf, "--check-config"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr

    # an edited configuration survives a new install and an uninstall
    edited = text.replace("admin_password = admin", "admin_password = s3cret")
    with open(conf, "w") as f:
        f.write(edited)
    r = make("install-data", "DESTDIR=" + dest)
    assert "stompd.conf exists and is kept as it is" in r.stdout
    assert open(conf).read() == edited
    assert open(conf + ".dist").read() == text
    assert stat.S_IMODE(os.stat(conf + ".dist").st_mode) == 0o640
    make("uninstall", "DESTDIR=" + dest)
    assert open(conf).read() == edited
    assert not os.path.exists(conf + ".dist")
    # an unedited one goes with the rest
    os.remove(conf)
    make("install", "DESTDIR=" + dest)
    make("uninstall", "DESTDIR=" + dest)
    assert Install(dest).files == []


def test_systemd_unit(installed, tmp_path):
    unit = open(installed.find("lib/systemd/system/stompd.service")).read()
    bindir, sysconfdir = make_var("bindir"), make_var("sysconfdir")
    prefix = make_var("prefix")
    bindir = bindir.replace("${exec_prefix}", make_var("exec_prefix")).replace("${prefix}", prefix)
    sysconfdir = sysconfdir.replace("${prefix}", prefix)
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert settings["Type"] == ("notify" if built_with_sd_notify() else "simple")
    assert settings["RestartPreventExitStatus"] == "78"     # CONFIG_ERROR
    # pings come only from a build with sd_notify: a simple unit must not expect them
    assert settings["WatchdogSec"] == ("30s" if built_with_sd_notify() else "0")
    assert settings["ExecStart"] == "%s/stompd -c %s/stompd/stompd.conf" % (bindir, sysconfdir)
    for k, v in [("User", "stompd"), ("StateDirectory", "stompd"), ("ProtectSystem", "strict"),
                 ("NoNewPrivileges", "yes"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                 ("ExecReload", "/bin/kill -HUP $MAINPID")]:
        assert settings.get(k) == v, k
    assert "@" not in unit.replace("@system-service", "").replace("@privileged", "")
    users = open(installed.find("lib/sysusers.d/stompd.conf")).read()
    assert re.search(r"^u\s+stompd\s", users, re.M)
    if shutil.which("systemd-analyze"):
        # verify needs the ExecStart program to exist: point it at the build's
        copy = tmp_path / "stompd.service"
        copy.write_text(unit.replace("%s/stompd " % bindir, "%s " % STOMPD))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def test_man_pages_render_without_warnings(installed):
    for page in MAN_PAGES:
        f = installed.find("share/man/" + page)
        r = subprocess.run(["groff", "-man", "-ww", "-z", f], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stderr == "", (page, r.stderr)
        r = subprocess.run(["man", "--warnings", "-l", f], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, MANWIDTH="80"))
        assert r.returncode == 0 and r.stderr == "", (page, r.stderr)
        name = os.path.basename(page).rsplit(".", 1)[0]
        assert r.stdout.lstrip().startswith(name.upper() + "("), (page, r.stdout[:200])
        assert "@" not in r.stdout.replace("@system-service", ""), page   # every @var@ substituted


def test_stompd_conf_5_documents_every_key(installed):
    keys = [line.split()[0] for line in subprocess.run([STOMPD, "--help-config"], capture_output=True,
                                                         text=True, timeout=20).stdout.splitlines()
            if line.startswith("  ")]
    assert len(keys) > 50
    text = subprocess.run(["man", "-l", installed.find("share/man/man5/stompd.conf.5")], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, MANWIDTH="200")).stdout
    for k in keys:
        assert re.search(r"^\s+%s\n" % re.escape(k), text, re.M), k
    # the keys SIGHUP applies are marked, the others are not
    assert re.search(r"log\.level\n\s+choice, default info, one of debug\|info\|warn\|error; reloaded on SIGHUP", text)
    assert re.search(r"stomp\.listen\n\s+host:port, default 127\.0\.0\.1:61613\.\n", text)


def test_another_prefix_at_make_time_is_substituted():
    """The unit and the manual pages were made once, with configure's
    directories: make install prefix=/opt/x installed a unit starting
    /usr/local/bin/stompd, where nothing was (helper-88). They are made
    again when the directories change. (Only these files: the program,
    whose paths are compiled in, is made again too, but other tests run it
    meanwhile; that was checked by hand.)"""
    files = ["contrib/systemd/stompd.service", "man/stompd.8"]
    try:
        make(*files, "prefix=/opt/stompd-x")
        with open(os.path.join(BUILDDIR, files[0])) as f:
            unit = f.read()
        assert "ExecStart=/opt/stompd-x/bin/stompd -c /opt/stompd-x/etc/stompd/stompd.conf\n" in unit, unit
        with open(os.path.join(BUILDDIR, files[1])) as f:
            assert "/opt/stompd-x/etc/stompd/stompd.conf" in f.read()
    finally:
        make(*files)  # the build's own directories again
    for name in files:
        with open(os.path.join(BUILDDIR, name)) as f:
            assert "/opt/stompd-x" not in f.read()
    # and with the same directories, nothing is made again
    assert "GEN" not in make(*files, "V=0").stdout


def test_installed_cluster_script_finds_its_configurations(installed):
    script = open(installed.find("bin/stompd-cluster")).read()
    m = re.search(r"^INSTALLED_CONF=(.*)$", script, re.M)
    assert m and os.path.isfile(installed.dest + m.group(1) + "/node1.conf")
    # the rest is the source tree's script, as it is used from the tree
    with open(os.path.join(SRCDIR, "contrib", "stompd-cluster")) as f:
        src = f.read()
    assert src.replace(re.search(r"^INSTALLED_CONF=.*$", src, re.M).group(0), m.group(0)) == script


def test_every_program_prints_its_version():
    version = make_var("PACKAGE_VERSION")
    r = subprocess.run([STOMPD, "--version"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout == "stompd %s\n" % version
    for p in ["stompd-failover-producer", "stompd-failover-consumer", "stompd-bench"]:
        r = subprocess.run([os.path.join(BUILDDIR, "contrib", p), "--version"], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 0 and r.stdout == "%s %s (libstompc %s)\n" % (p, version, version), (p, r.stdout)
    r = subprocess.run([os.path.join(SRCDIR, "contrib", "stompd-cluster"), "--version"], capture_output=True,
                       text=True, timeout=20, env=dict(os.environ, STOMPD_BIN=STOMPD))
    assert r.returncode == 0 and r.stdout == "stompd-cluster, for stompd %s\n" % version
