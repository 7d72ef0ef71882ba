//! `sandlet sign` and `sandlet verify` against the loopback registry, with
//! keys `openssl` makes: signed by a trusted key verifies; unsigned, signed
//! by another key, a signature moved to another digest, a tampered
//! signature and a registry that is down are refused with the reason.
//! (Stations that run only signed modules come with the rest of issue 18.)

use std::path::Path;
use std::process::Command;

use crate::cluster::push;
use crate::fixtures::{Ran, guests, run_sandlet};
use crate::registry::{RegistrySetup, TestRegistry};

/// An openssl P-256 key pair in `dir`: `NAME.pem` and `NAME.pub`.
fn key_pair(dir: &Path, name: &str) -> (String, String) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    for args in [
        vec![
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            private.to_str().unwrap(),
        ],
        vec![
            "ec",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    ] {
        let out = Command::new("openssl").args(&args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    (
        private.to_str().unwrap().to_owned(),
        public.to_str().unwrap().to_owned(),
    )
}

fn sign(registry: &TestRegistry, reference: &str, key: &str) -> Ran {
    run_sandlet([
        "sign",
        "--insecure-registry",
        &registry.addr,
        reference,
        "--key",
        key,
    ])
}

fn verify(registry: &TestRegistry, reference: &str, keys: &[&str]) -> Ran {
    let mut args = vec![
        "verify".to_owned(),
        "--insecure-registry".to_owned(),
        registry.addr.clone(),
        reference.to_owned(),
    ];
    for key in keys {
        args.extend(["--key".to_owned(), (*key).to_owned()]);
    }
    run_sandlet(args)
}

#[track_caller]
fn assert_refused(ran: &Ran, reason: &str) {
    assert_eq!(ran.code, Some(1), "{ran:#?}");
    assert!(
        ran.stderr.contains("no valid signature by a trusted key") && ran.stderr.contains(reason),
        "expected {reason:?}: {ran:#?}"
    );
}

#[test]
fn signatures_verify_only_for_their_digest_and_a_trusted_key() {
    let mut registry = TestRegistry::start(RegistrySetup::default());
    let dir = tempfile::tempdir().unwrap();
    let (author, author_pub) = key_pair(dir.path(), "author");
    let (_, stranger_pub) = key_pair(dir.path(), "stranger");
    let (second, second_pub) = key_pair(dir.path(), "second");
    let hello = push(&registry, &guests().hello, "signed/hello:v1");
    let stats = push(&registry, &guests().column_stats, "signed/stats:v1");

    // Unsigned.
    assert_refused(
        &verify(&registry, &hello, &[&author_pub]),
        "it has no signature",
    );

    // Signed by the author: verifies with the author's key, by tag and by
    // digest, and not with a stranger's.
    let ran = sign(&registry, &hello, &author);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert!(ran.stdout.starts_with("signed sha256:"), "{ran:#?}");
    let digest = ran.stdout.split_whitespace().nth(1).unwrap().to_owned();
    let ran = verify(&registry, &hello, &[&author_pub]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert!(
        ran.stdout
            .starts_with(&format!("verified {digest} signed by key sha256:")),
        "{ran:#?}"
    );
    let by_digest = format!("{}/signed/hello@{digest}", registry.addr);
    assert_eq!(verify(&registry, &by_digest, &[&author_pub]).code, Some(0));
    assert_refused(
        &verify(&registry, &hello, &[&stranger_pub]),
        "no trusted key made this signature",
    );

    // Key rotation: a second signature beside the first; either key is
    // enough, and a station trusting both accepts either.
    assert_eq!(sign(&registry, &hello, &second).code, Some(0));
    assert_eq!(verify(&registry, &hello, &[&second_pub]).code, Some(0));
    assert_eq!(
        verify(&registry, &hello, &[&stranger_pub, &author_pub]).code,
        Some(0)
    );

    // The signature artifact of hello copied to stats' digest: it signs
    // another digest.
    let ran = verify(&registry, &stats, &[&author_pub]);
    assert_refused(&ran, "it has no signature");
    let hello_sig = format!("{}/signed/hello:{}", registry.addr, sig_tag(&digest));
    let stats_digest = manifest_digest(&registry, "signed/stats", "v1");
    copy_manifest(
        &registry,
        &hello_sig,
        &format!("signed/stats:{}", sig_tag(&stats_digest)),
    );
    assert_refused(
        &verify(&registry, &stats, &[&author_pub]),
        &format!("the payload signs {digest}, not {stats_digest}"),
    );

    // The registry goes away: refused as unreachable (exit 2), not signed.
    registry.stop();
    let ran = verify(&registry, &hello, &[&author_pub]);
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(ran.stderr.contains("unreachable"), "{ran:#?}");
    registry.start_again();
    assert_eq!(verify(&registry, &hello, &[&author_pub]).code, Some(0));

    // Bad key files are named.
    let ran = verify(&registry, &hello, &[&author]);
    ran.assert_sandlet_error("holds a PEM EC PRIVATE KEY, not PUBLIC KEY");
    let ran = sign(&registry, &hello, &author_pub);
    ran.assert_sandlet_error("holds a PEM PUBLIC KEY, not EC PRIVATE KEY or PRIVATE KEY");
}

fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// The manifest digest of `repo:tag`, from the registry's HTTP API.
fn manifest_digest(registry: &TestRegistry, repo: &str, tag: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sfI",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!(
            "http://{}/v2/{repo}/manifests/{tag}",
            registry.addr
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("docker-content-digest:")
                .then(|| l.split_once(':').unwrap().1.trim().to_owned())
        })
        .expect("a digest header")
}

/// Copies the manifest at `from` (a full reference) to `repo:tag` of the
/// same registry, blobs included, with the registry's HTTP API.
fn copy_manifest(registry: &TestRegistry, from: &str, to: &str) {
    let (from_repo, from_tag) = from
        .strip_prefix(&format!("{}/", registry.addr))
        .unwrap()
        .rsplit_once(':')
        .unwrap();
    let (to_repo, to_tag) = to.rsplit_once(':').unwrap();
    let base = format!("http://{}/v2", registry.addr);
    let manifest = Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!("{base}/{from_repo}/manifests/{from_tag}"))
        .output()
        .unwrap();
    assert!(manifest.status.success(), "{manifest:?}");
    let parsed: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let mut digests = vec![parsed["config"]["digest"].as_str().unwrap().to_owned()];
    for layer in parsed["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_owned());
    }
    for digest in digests {
        let out = Command::new("curl")
            .args(["-sf", "-X", "POST"])
            .arg(format!(
                "{base}/{to_repo}/blobs/uploads/?mount={digest}&from={from_repo}"
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let mut put = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            "@-",
        ])
        .arg(format!("{base}/{to_repo}/manifests/{to_tag}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    put.stdin
        .take()
        .unwrap()
        .write_all(&manifest.stdout)
        .unwrap();
    let out = put.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}
