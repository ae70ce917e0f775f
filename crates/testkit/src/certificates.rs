//! A certificate authority and a server certificate for tests of TLS, made with the
//! `openssl` command (which `.ci/run` installs).

use std::path::Path;
use std::process::Command;

/// Makes a certificate authority (`ca.crt`, `ca.key`) and a server certificate for
/// `127.0.0.1` it signed (`server.crt`, `server.key`, readable by its owner only) in `dir`.
pub fn make_certificates(dir: &Path) -> Result<(), String> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"])
        .args(["-subj", "/CN=stowage test CA"])
        .current_dir(dir))?;
    run(Command::new("openssl")
        .arg("req")
        .args(ec)
        .args(["-keyout", "server.key", "-out", "server.csr"])
        .args(["-subj", "/CN=127.0.0.1"])
        .current_dir(dir))?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    run(Command::new("openssl")
        .args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
        ])
        .args(["-CAcreateserial", "-out", "server.crt", "-days", "2"])
        .args(["-extfile", "server.ext"])
        .current_dir(dir))?;
    // The server refuses a key others can read.
    run(Command::new("chmod")
        .args(["600", "server.key"])
        .current_dir(dir))?;
    Ok(())
}

fn run(command: &mut Command) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
