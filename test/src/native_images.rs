//! Native (linux/amd64) service images for the compose and pod tests, made from this
//! machine's Debian binaries with wasmpod's own image builder: each program, the shared
//! libraries the dynamic loader would give it (`ldd`), and the few data files it reads. No
//! shell, no package manager: a service image is what its server needs and nothing else.

use std::path::{Path, PathBuf};

use wasmpod_deploy::installer_image::shared_libraries;
use wasmpod_oci::image::ImageBuilder;
use wasmpod_oci::spin::package::regular_files;

/// `image` with the programs at `programs` (host paths, kept at the same paths) and their
/// libraries.
fn with_programs(mut image: ImageBuilder, programs: &[PathBuf]) -> ImageBuilder {
    let mut libraries = std::collections::BTreeSet::new();
    for program in programs {
        image = add_file(image, program, 0o755);
        libraries.extend(shared_libraries(program).expect("the program's libraries"));
    }
    for lib in libraries {
        image = add_file(image, &lib, 0o755);
    }
    image
}

/// `image` with the host file at `path` (followed if it is a link), at the same path.
fn add_file(image: ImageBuilder, path: &Path, mode: u32) -> ImageBuilder {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    image.file(&path.to_string_lossy(), bytes, mode)
}

/// A Redis server image: `redis-server` listening on every address of its network, saving
/// nothing, and `redis-cli` for `docker exec`.
pub fn redis(name: &str) -> ImageBuilder {
    let image = ImageBuilder::new(name)
        .platform("linux", "amd64")
        .entrypoint(["/usr/bin/redis-server"])
        .cmd([
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
    with_programs(
        image,
        &["/usr/bin/redis-server".into(), "/usr/bin/redis-cli".into()],
    )
}

/// A PostgreSQL server image for the cluster of the `postgres` user `uid`:`gid` that is
/// mounted at `/data` (see [`crate::postgres::Cluster`]): `postgres` from `bin` with its
/// share files and PL/pgSQL, listening on every address and trusting every client, no
/// Unix socket.
pub fn postgres(name: &str, bin: &Path, uid: u32, gid: u32) -> ImageBuilder {
    let server = bin.join("postgres");
    let image = ImageBuilder::new(name)
        .platform("linux", "amd64")
        .entrypoint([server.to_string_lossy().to_string()])
        .cmd([
            "-D",
            "/data",
            "-c",
            "listen_addresses=*",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
            "-c",
            "hba_file=/etc/postgresql/pg_hba.conf",
        ])
        // Any client on the container's networks, without a password (a test server).
        .file(
            "/etc/postgresql/pg_hba.conf",
            "host all all all trust\n",
            0o644,
        )
        // The server looks its user up.
        .file(
            "/etc/passwd",
            format!("postgres:x:{uid}:{gid}::/data:/bin/false\n"),
            0o644,
        )
        .file("/etc/group", format!("postgres:x:{gid}:\n"), 0o644);
    let mut image = with_programs(image, &[server]);
    // It checks that its library directory (`../lib`) exists; PL/pgSQL is all a plain
    // cluster loads from it.
    let plpgsql = bin.with_file_name("lib").join("plpgsql.so");
    image = add_file(image, &plpgsql, 0o644);
    // Its share directory (time zone abbreviations, ...) is `../../../share/postgresql/<major>`
    // from `bin`, as Debian lays it out; time zones come from the system's data.
    let major = bin
        .parent()
        .and_then(Path::file_name)
        .expect("a /usr/lib/postgresql/<major>/bin directory");
    let share = Path::new("/usr/share/postgresql").join(major);
    for file in regular_files(&share).expect("the server's share directory") {
        image = add_file(image, &file, 0o644);
    }
    add_file(image, Path::new("/usr/share/zoneinfo/UTC"), 0o644)
}
