"""scripts/debian-mirror.sh: the Debian mirror that setup fetches pgvector's source from.

The shell function runs for real (bash, the system's awk) on apt configurations the tests
write, in both formats apt reads: deb822 `*.sources` stanzas and one-line `sources.list`.
"""

import os
import pathlib
import subprocess

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "debian-mirror.sh"

MIRROR = "http://mirror.example.internal/debian"
SECURITY = "http://mirror.example.internal/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

DEB822 = f"""\
Types: deb
# a comment inside a stanza, as Debian's own images write them
URIs: {MIRROR}/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {SECURITY}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

SECURITY_ONLY_DEB822 = f"""\
Types: deb
URIs: {SECURITY}
Suites: bookworm-security
Components: main
"""

SECURITY_ONLY_LIST = f"deb {SECURITY} bookworm-security main\n"


def mirror(etc: pathlib.Path, **env: str) -> subprocess.CompletedProcess:
    """Sources the script and calls the function, as scripts/install.sh does."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PGASK_")}
    return subprocess.run(
        ["bash", "-c", 'source "$1" && debian_mirror "$2"', "bash", str(SCRIPT), str(etc)],
        env={**clean, **env}, capture_output=True, text=True, timeout=30,
    )


def write(etc: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    (etc / "sources.list.d").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (etc / name).write_text(text)
    return etc


def test_deb822_takes_the_main_archive_not_security(tmp_path):
    etc = write(tmp_path, {"sources.list.d/debian.sources": DEB822})
    result = mirror(etc)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{MIRROR}\n"


def test_deb822_skips_disabled_stanzas_other_types_and_foreign_suites(tmp_path):
    etc = write(tmp_path, {"sources.list.d/a.sources": f"""\
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src
URIs: http://sources-only.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: https://deb.nodesource.example/node_20.x
Suites: nodistro
Components: main

Types: deb deb-src
URIs:
 {MIRROR}
 http://second.example/debian
Suites: trixie
Components: contrib main
"""})
    result = mirror(etc)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{MIRROR}\n"


def test_classic_sources_list_with_options_and_comments(tmp_path):
    etc = write(tmp_path, {"sources.list": f"""\
# deb http://commented.example/debian bookworm main
deb-src http://sources-only.example/debian bookworm main
deb {SECURITY} bookworm-security main
deb https://packages.cloud.example/apt cloud-sdk-bookworm main
deb [arch=amd64 signed-by={KEYRING}] {MIRROR} bookworm contrib main  # the one
"""})
    result = mirror(etc)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{MIRROR}\n"


def test_classic_list_file_in_sources_list_d(tmp_path):
    etc = write(tmp_path, {"sources.list.d/mirror.list": f"deb {MIRROR} stable main\n"})
    assert mirror(etc).stdout == f"{MIRROR}\n"


def test_both_formats_follow_apts_reading_order(tmp_path):
    # sources.list first, then sources.list.d/ by name, .list and .sources alike.
    etc = write(tmp_path, {
        "sources.list": SECURITY_ONLY_LIST,
        "sources.list.d/10-first.sources": DEB822,
        "sources.list.d/20-later.list": "deb http://later.example/debian bookworm main\n",
    })
    assert mirror(etc).stdout == f"{MIRROR}\n"
    (etc / "sources.list").write_text("deb http://classic.example/debian bookworm main\n")
    assert mirror(etc).stdout == "http://classic.example/debian\n"


@pytest.mark.parametrize("files", [
    {"sources.list.d/debian.sources": SECURITY_ONLY_DEB822},
    {"sources.list": SECURITY_ONLY_LIST},
    {"sources.list.d/debian.sources": SECURITY_ONLY_DEB822, "sources.list": SECURITY_ONLY_LIST},
    {},
], ids=["deb822", "classic", "both", "none"])
def test_security_only_or_nothing_is_a_clear_error(tmp_path, files):
    etc = write(tmp_path, files)
    result = mirror(etc)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no Debian archive mirror found" in result.stderr
    assert f"{etc}/sources.list.d/*.sources" in result.stderr
    assert "-security does not count" in result.stderr
    assert "PGASK_DEBIAN_MIRROR" in result.stderr


def test_override_wins_even_without_any_apt_config(tmp_path):
    result = mirror(tmp_path / "missing", PGASK_DEBIAN_MIRROR="http://proxy.example:3142/debian/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "http://proxy.example:3142/debian\n"


def test_apt_root_from_the_environment_and_the_script_run_directly(tmp_path):
    etc = write(tmp_path, {"sources.list.d/debian.sources": DEB822})
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PGASK_")}
    result = subprocess.run(["bash", str(SCRIPT)], env={**clean, "PGASK_APT_ETC": str(etc)},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{MIRROR}\n"
