"""scripts/install-citus.sh decides whether to build Citus: these run it for real against a
stand-in pg_config whose extension and library folders are temporary, so no build starts
(each case stops before one) and the real installation is left alone."""

import hashlib
import os
import pathlib
import subprocess

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "install-citus.sh"
TARBALL = "citus-12.1.12-src.tar.gz"


def fake_pg(tmp_path: pathlib.Path) -> pathlib.Path:
    share, lib = tmp_path / "share", tmp_path / "lib"
    (share / "extension").mkdir(parents=True, exist_ok=True)
    lib.mkdir(exist_ok=True)
    pg_config = tmp_path / "pg_config"
    pg_config.write_text(
        f'#!/bin/sh\ncase "$1" in --sharedir) echo {share} ;; --pkglibdir) echo {lib} ;; esac\n'
    )
    pg_config.chmod(0o755)
    return pg_config


def run(tmp_path: pathlib.Path, tarball: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PG_CONFIG": str(fake_pg(tmp_path)), "PGASK_CITUS_TARBALL": str(tarball)}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=60)


def install(tmp_path: pathlib.Path, default_version: str, library_text: bytes) -> None:
    (tmp_path / "share" / "extension" / "citus.control").write_text(
        f"comment = 'Citus distributed database'\ndefault_version = '{default_version}'\n"
    )
    (tmp_path / "lib" / "citus.so").write_bytes(b"\x7fELF..." + library_text + b"\0...")


def test_without_the_tarball_it_says_so_in_one_line_and_succeeds(tmp_path):
    result = run(tmp_path, tmp_path / "vendor" / TARBALL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"Citus skipped: no source tarball at {tmp_path / 'vendor' / TARBALL} "
        "(set PGASK_CITUS_TARBALL); the Citus tests will skip"
    ]


def test_an_installed_12_1_12_is_kept_without_looking_for_the_tarball(tmp_path):
    fake_pg(tmp_path)
    install(tmp_path, "12.1-1", b"Citus 12.1.12 on x86_64-pc-linux-gnu")
    result = run(tmp_path, tmp_path / "absent.tar.gz")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Citus 12.1.12 already installed\n"


def test_an_older_12_1_build_is_not_taken_for_12_1_12(tmp_path):
    fake_pg(tmp_path)
    install(tmp_path, "12.1-1", b"Citus 12.1.4 on x86_64-pc-linux-gnu")
    result = run(tmp_path, tmp_path / "absent.tar.gz")
    assert "already installed" not in result.stdout
    assert result.stdout.startswith("Citus skipped: no source tarball")


def test_a_tarball_whose_sha256_does_not_match_is_refused(tmp_path):
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / TARBALL).write_bytes(b"not the Citus source")
    good = hashlib.sha256(b"the Citus source").hexdigest()
    (vendor / "SHA256SUMS").write_text(f"{good}  {TARBALL}\n")
    result = run(tmp_path, vendor / TARBALL)
    assert result.returncode == 1
    actual = hashlib.sha256(b"not the Citus source").hexdigest()
    assert f"has sha256 {actual}, {vendor / 'SHA256SUMS'} says {good}" in result.stderr


def test_a_tarball_without_a_listed_sha256_is_refused(tmp_path):
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / TARBALL).write_bytes(b"anything")
    result = run(tmp_path, vendor / TARBALL)
    assert result.returncode == 1
    assert f"no sha256 for {TARBALL} in {vendor / 'SHA256SUMS'}" in result.stderr
    assert "refusing to build an unchecked tarball" in result.stderr
