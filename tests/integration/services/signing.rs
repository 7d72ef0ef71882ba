//! `sandlet sign` and `sandlet verify` against the loopback registry, with
//! keys `openssl` makes: signed by a trusted key verifies; unsigned, signed
//! by another key, a signature moved to another digest, a tampered
//! signature and a registry that is down are refused with the reason.
//! Stations whose allow-list names keys run only modules one of those keys
//! signed, and refuse every other before its bytes are fetched.

use std::path::Path;
use std::process::Command;

use crate::cluster::push;
use crate::fixtures::{Ran, guests, output_of, run_sandlet};
use crate::registry::{RegistrySetup, TestRegistry};

/// An openssl P-256 key pair in `dir`: `NAME.pem` and `NAME.pub`.
pub(crate) fn key_pair(dir: &Path, name: &str) -> (String, String) {
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
        let out = output_of(Command::new("openssl").args(&args));
        assert!(out.status.success(), "{out:?}");
    }
    (
        private.to_str().unwrap().to_owned(),
        public.to_str().unwrap().to_owned(),
    )
}

pub(crate) fn sign(registry: &TestRegistry, reference: &str, key: &str) -> Ran {
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

    // A key as `cosign generate-key-pair` writes it (encrypted; this one
    // with an empty password: sigstore-rs's interoperability vector
    // cosign_generated_encrypted_empty_private.key), its password from
    // COSIGN_PASSWORD as cosign takes it.
    let cosign_key = dir.path().join("cosign.key");
    std::fs::write(&cosign_key, COSIGN_KEY).unwrap();
    let cosign_sign = |password: Option<&str>| {
        let mut command = crate::fixtures::sandlet();
        command.args([
            "sign",
            "--insecure-registry",
            &registry.addr,
            &stats,
            "--key",
            cosign_key.to_str().unwrap(),
        ]);
        match password {
            Some(password) => command.env("COSIGN_PASSWORD", password),
            None => command.env_remove("COSIGN_PASSWORD"),
        };
        Ran::from(command.output().unwrap())
    };
    cosign_sign(None).assert_sandlet_error("its password is needed (COSIGN_PASSWORD)");
    cosign_sign(Some("guess")).assert_sandlet_error("cannot be decrypted with this password");
    let ran = cosign_sign(Some(""));
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let cosign_pub = dir.path().join("cosign.pub");
    let fingerprint = ran.stdout.trim().rsplit(' ').next().unwrap().to_owned();
    std::fs::write(
        &cosign_pub,
        sandlet_trust::PrivateKey::from_encrypted_pem(COSIGN_KEY, Some(b""))
            .unwrap()
            .public()
            .to_pem(),
    )
    .unwrap();
    let ran = verify(&registry, &stats, &[cosign_pub.to_str().unwrap()]);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert!(
        ran.stdout.ends_with(&format!("{fingerprint}\n")),
        "{ran:#?}"
    );

    // Bad key files are named.
    let ran = verify(&registry, &hello, &[&author]);
    ran.assert_sandlet_error("holds a PEM EC PRIVATE KEY, not PUBLIC KEY");
    let ran = sign(&registry, &hello, &author_pub);
    ran.assert_sandlet_error("holds a PEM PUBLIC KEY, not EC PRIVATE KEY or PRIVATE KEY");
}

/// Written by `cosign generate-key-pair` with an empty password (kept by
/// sigstore-rs as tests/data/keys/cosign_generated_encrypted_empty_private.key,
/// Apache-2.0).
const COSIGN_KEY: &str =
    include_str!("../../../trust/testdata/cosign-generated-empty-password.key");

fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// The manifest digest of `repo:tag`, from the registry's HTTP API.
fn manifest_digest(registry: &TestRegistry, repo: &str, tag: &str) -> String {
    let out = output_of(
        Command::new("curl")
            .args([
                "-sfI",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
            ])
            .arg(format!(
                "http://{}/v2/{repo}/manifests/{tag}",
                registry.addr
            )),
    );
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

/// `curl -sf ARGS...` with `body` on stdin; its stdout.
fn curl(args: &[&str], body: Option<&[u8]>) -> Vec<u8> {
    let out = crate::fixtures::output_with_stdin(
        Command::new("curl").arg("-sf").args(args),
        body.unwrap_or_default(),
    );
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    out.stdout
}

/// The image manifest `repo:tag` as JSON, from the registry's HTTP API.
fn get_manifest(registry: &TestRegistry, repo: &str, tag: &str) -> serde_json::Value {
    let body = curl(
        &[
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("http://{}/v2/{repo}/manifests/{tag}", registry.addr),
        ],
        None,
    );
    serde_json::from_slice(&body).unwrap()
}

/// Stores `manifest` as `repo:tag`.
fn put_manifest(registry: &TestRegistry, repo: &str, tag: &str, manifest: &serde_json::Value) {
    curl(
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            "@-",
            &format!("http://{}/v2/{repo}/manifests/{tag}", registry.addr),
        ],
        Some(&serde_json::to_vec(manifest).unwrap()),
    );
}

/// Uploads `bytes` as a blob of `repo`; its digest.
fn put_blob(registry: &TestRegistry, repo: &str, bytes: &[u8]) -> String {
    let digest = sandlet_runtime::Digest::of(bytes).to_string();
    let out = output_of(
        Command::new("curl")
            .args(["-sf", "-D", "-", "-o", "/dev/null", "-X", "POST"])
            .arg(format!("http://{}/v2/{repo}/blobs/uploads/", registry.addr)),
    );
    assert!(out.status.success(), "{out:?}");
    let location = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("location:")
                .then(|| l.split_once(':').unwrap().1.trim().to_owned())
        })
        .expect("an upload location");
    let location = if location.starts_with("http") {
        location
    } else {
        format!("http://{}{location}", registry.addr)
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    curl(
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "@-",
            &format!("{location}{separator}digest={digest}"),
        ],
        Some(bytes),
    );
    digest
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
    let manifest = get_manifest(registry, from_repo, from_tag);
    let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for layer in manifest["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_owned());
    }
    for digest in digests {
        curl(
            &[
                "-X",
                "POST",
                &format!(
                    "http://{}/v2/{to_repo}/blobs/uploads/?mount={digest}&from={from_repo}",
                    registry.addr
                ),
            ],
            None,
        );
    }
    put_manifest(registry, to_repo, to_tag, &manifest);
}

/// A station file allowing `registry/alg/*` with `keys` (none: unsigned
/// modules run too).
fn station(dir: &Path, registry: &TestRegistry, name: &str, keys: &[&str]) -> String {
    let path = dir.join(format!("{name}.yaml"));
    let keys = if keys.is_empty() {
        String::new()
    } else {
        format!("\n      keys: [{}]", keys.join(", "))
    };
    std::fs::write(
        &path,
        format!(
            "modules:\n  allow:\n    - repository: {}/alg/*{keys}\n",
            registry.addr
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

/// `sandlet SUBCOMMAND --config STATION --state-dir STATE REFERENCE`.
fn at_station(
    registry: &TestRegistry,
    command: &str,
    station: &str,
    state: &Path,
    reference: &str,
) -> Ran {
    run_sandlet([
        command,
        "--insecure-registry",
        &registry.addr,
        "--config",
        station,
        "--state-dir",
        state.to_str().unwrap(),
        reference,
    ])
}

/// Whether the module file `module` has been fetched into `state`'s store.
fn fetched(state: &Path, module: &Path) -> bool {
    let digest = sandlet_runtime::Digest::of(&std::fs::read(module).unwrap());
    state.join("modules/sha256").join(digest.hex()).exists()
}

#[track_caller]
fn assert_not_allowed(ran: &Ran, reason: &str) {
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(
        ran.stderr
            .contains("is not allowed on this station: no valid signature by a trusted key: ")
            && ran.stderr.contains(reason),
        "expected {reason:?}: {ran:#?}"
    );
    assert!(ran.stdout.is_empty(), "nothing ran: {ran:#?}");
}

#[test]
fn a_station_that_names_keys_runs_only_modules_they_signed() {
    let mut registry = TestRegistry::start(RegistrySetup::default());
    let dir = tempfile::tempdir().unwrap();
    let (reviewer, reviewer_pub) = key_pair(dir.path(), "reviewer");
    let (stranger, _) = key_pair(dir.path(), "stranger");
    let (successor, successor_pub) = key_pair(dir.path(), "successor");
    // Keys are named relative to the station file, or absolute.
    let strict = station(dir.path(), &registry, "strict", &["reviewer.pub"]);
    let rotating = station(
        dir.path(),
        &registry,
        "rotating",
        &[&reviewer_pub, "successor.pub"],
    );
    let hello = push(&registry, &guests().hello, "alg/hello:v1");
    let stats = push(&registry, &guests().column_stats, "alg/stats:v1");
    let state = tempfile::tempdir().unwrap();
    let state = state.path();
    let hello_file = &guests().hello;

    // Unsigned: refused, and not one byte of the module fetched.
    assert_not_allowed(
        &at_station(&registry, "run", &strict, state, &hello),
        "it has no signature",
    );
    assert_not_allowed(
        &at_station(&registry, "pull", &strict, state, &hello),
        "it has no signature",
    );
    assert!(!fetched(state, hello_file));

    // Signed by a key the station does not trust.
    assert_eq!(sign(&registry, &hello, &stranger).code, Some(0));
    assert_not_allowed(
        &at_station(&registry, "run", &strict, state, &hello),
        "no trusted key made this signature",
    );
    assert!(!fetched(state, hello_file));

    // The reviewer's signature of hello, copied to stats: it signs another
    // digest.
    let ran = sign(&registry, &hello, &reviewer);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let hello_digest = ran.stdout.split_whitespace().nth(1).unwrap().to_owned();
    let stats_digest = manifest_digest(&registry, "alg/stats", "v1");
    copy_manifest(
        &registry,
        &format!("{}/alg/hello:{}", registry.addr, sig_tag(&hello_digest)),
        &format!("alg/stats:{}", sig_tag(&stats_digest)),
    );
    assert_not_allowed(
        &at_station(&registry, "run", &strict, state, &stats),
        &format!("the payload signs {hello_digest}, not {stats_digest}"),
    );
    assert!(!fetched(state, &guests().column_stats));

    // Tampered signature artifacts of stats, each written straight to the
    // registry: the reviewer's signature of hello's payload under a payload
    // naming stats; a signature with a changed byte; one that is not
    // base64; and a layer whose payload is not what its descriptor says.
    let genuine = get_manifest(&registry, "alg/hello", &sig_tag(&hello_digest));
    // The stranger's signature first, then the reviewer's.
    let reviewer_layer = genuine["layers"].as_array().unwrap()[1].clone();
    let signature = reviewer_layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap()
        .to_owned();
    let stats_payload = format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"{}/alg/stats\"}},\
         \"image\":{{\"docker-manifest-digest\":\"{stats_digest}\"}},\
         \"type\":\"cosign container image signature\"}},\"optional\":null}}",
        registry.addr
    );
    let stats_payload_digest = put_blob(&registry, "alg/stats", stats_payload.as_bytes());
    let flipped = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut der = engine.decode(&signature).unwrap();
        let last = der.len() - 1;
        der[last] ^= 1;
        engine.encode(der)
    };
    let tampered = |signature: &str, payload_digest: &str, size: usize| {
        let mut manifest = genuine.clone();
        let mut layer = reviewer_layer.clone();
        layer["annotations"]["dev.cosignproject.cosign/signature"] = signature.into();
        layer["digest"] = payload_digest.into();
        layer["size"] = size.into();
        manifest["layers"] = serde_json::json!([layer]);
        for blob in [&manifest["config"]["digest"], &reviewer_layer["digest"]] {
            curl(
                &[
                    "-X",
                    "POST",
                    &format!(
                        "http://{}/v2/alg/stats/blobs/uploads/?mount={}&from=alg/hello",
                        registry.addr,
                        blob.as_str().unwrap()
                    ),
                ],
                None,
            );
        }
        put_manifest(&registry, "alg/stats", &sig_tag(&stats_digest), &manifest);
    };
    for (signature, payload_digest, size, reason) in [
        (
            signature.as_str(),
            stats_payload_digest.as_str(),
            stats_payload.len(),
            "no trusted key made this signature",
        ),
        (
            flipped.as_str(),
            stats_payload_digest.as_str(),
            stats_payload.len(),
            "no trusted key made this signature",
        ),
        (
            "not base64!",
            stats_payload_digest.as_str(),
            stats_payload.len(),
            "the signature is not base64 DER ECDSA",
        ),
        // A payload said to be 10 MB: not fetched at all.
        (
            signature.as_str(),
            stats_payload_digest.as_str(),
            10_000_000,
            "a payload of 10000000 bytes",
        ),
    ] {
        tampered(signature, payload_digest, size);
        let ran = at_station(&registry, "run", &strict, state, &stats);
        assert_not_allowed(&ran, reason);
        assert!(!fetched(state, &guests().column_stats));
    }

    // Signed by the reviewer: runs, and `pull` names the key.
    let ran = at_station(&registry, "run", &strict, state, &hello);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_eq!(ran.stdout, "hello from wasm\n");
    let ran = at_station(&registry, "pull", &strict, state, &hello);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let reviewer_fingerprint = fingerprint(&reviewer_pub);
    assert!(
        ran.stdout
            .ends_with(&format!("signed by key {reviewer_fingerprint}\n")),
        "{ran:#?}"
    );

    // The tag moved to other code: the reviewer signed the old digest, not
    // this one, so it is refused until the tag points back.
    push(&registry, &guests().column_stats, "alg/hello:v1");
    assert_not_allowed(
        &at_station(&registry, "run", &strict, state, &hello),
        "it has no signature",
    );
    push(&registry, &guests().hello, "alg/hello:v1");
    assert_eq!(
        at_station(&registry, "run", &strict, state, &hello).stdout,
        "hello from wasm\n"
    );

    // Rotation: stats signed by the successor only. The strict station
    // refuses it; one trusting both keys runs both modules.
    let ran = sign(&registry, &stats, &successor);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert_not_allowed(
        &at_station(&registry, "run", &strict, state, &stats),
        "no trusted key made this signature",
    );
    let ran = at_station(&registry, "pull", &rotating, state, &stats);
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    assert!(
        ran.stdout
            .ends_with(&format!("signed by key {}\n", fingerprint(&successor_pub))),
        "{ran:#?}"
    );
    assert_eq!(
        at_station(&registry, "run", &rotating, state, &hello).code,
        Some(0)
    );

    // The registry goes away: refused as unreachable, nothing runs.
    registry.stop();
    let ran = at_station(&registry, "run", &strict, state, &hello);
    assert_eq!(ran.code, Some(2), "{ran:#?}");
    assert!(ran.stderr.contains("unreachable"), "{ran:#?}");
    assert!(ran.stdout.is_empty(), "{ran:#?}");
    registry.start_again();
    assert_eq!(
        at_station(&registry, "run", &strict, state, &hello).code,
        Some(0)
    );

    // A station file naming a key that is not a public key is refused.
    let broken = station(dir.path(), &registry, "broken", &[&reviewer]);
    let ran = at_station(&registry, "run", &broken, state, &hello);
    ran.assert_sandlet_error("holds a PEM EC PRIVATE KEY, not PUBLIC KEY");
}

/// The fingerprint `sandlet verify` prints for the public key file `path`.
fn fingerprint(path: &str) -> String {
    sandlet_trust::PublicKey::from_pem(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .fingerprint()
}

/// The node's path: a module stored while the station ran unsigned
/// modules is checked again once the allow-list names keys; a signature
/// found is remembered with the module, so later starts (a restart
/// included) need no registry; a key the list no longer trusts does not
/// count.
#[tokio::test]
async fn stored_modules_are_admitted_again_under_the_allow_list_of_now() {
    use sandlet_registry::allow_list::{AllowList, AllowRule};
    use sandlet_registry::oci::{Credentials, Registry, RegistryOptions};
    use sandlet_registry::pull::{ImagePuller, PullPolicy, WaitingReason};
    use sandlet_registry::store::ModuleStore;
    use std::sync::Arc;

    let mut registry = TestRegistry::start(RegistrySetup::default());
    let dir = tempfile::tempdir().unwrap();
    let (reviewer, _) = key_pair(dir.path(), "reviewer");
    let (_, successor_pub) = key_pair(dir.path(), "successor");
    let hello = push(&registry, &guests().hello, "alg/hello:v1");
    let state = tempfile::tempdir().unwrap();
    let addr = registry.addr.clone();
    let puller = |keys: Option<Vec<&str>>| {
        let store = Arc::new(ModuleStore::open(&state.path().join("modules"), 1 << 30).unwrap());
        let client = Arc::new(
            Registry::new(&RegistryOptions {
                insecure: vec![addr.clone()],
                ca_file: None,
            })
            .unwrap(),
        );
        let allow = AllowList::new(
            vec![AllowRule {
                repository: format!("{addr}/alg/*"),
                digests: None,
                keys: keys.map(|k| k.iter().map(std::path::PathBuf::from).collect()),
            }],
            dir.path(),
        )
        .unwrap();
        ImagePuller::new(client, store, allow, state.path()).unwrap()
    };
    let anonymous = Credentials::anonymous();
    let ensure = |puller: ImagePuller| {
        let hello = hello.clone();
        let anonymous = anonymous.clone();
        async move {
            puller
                .ensure(&hello, PullPolicy::IfNotPresent, &anonymous)
                .await
        }
    };

    // Stored under a list without keys.
    let pulled = ensure(puller(None)).await.unwrap();
    assert!(pulled.downloaded && pulled.signed_by.is_none());

    // The list now names the reviewer's key: the stored, unsigned module
    // is refused, without a retry.
    let refused = ensure(puller(Some(vec!["reviewer.pub"])))
        .await
        .unwrap_err();
    assert_eq!(refused.reason, WaitingReason::ModuleNotAllowed, "{refused}");
    assert_eq!(refused.retry_after, None);
    assert!(
        refused
            .message
            .contains("no valid signature by a trusted key: it has no signature"),
        "{refused}"
    );

    // Signed: admitted from the store (nothing downloaded again), and the
    // key remembered.
    assert_eq!(sign(&registry, &hello, &reviewer).code, Some(0));
    let admitted = ensure(puller(Some(vec!["reviewer.pub"]))).await.unwrap();
    assert!(!admitted.downloaded);
    assert_eq!(
        admitted.signed_by.as_deref(),
        Some(
            sandlet_trust::PublicKey::from_pem(
                &std::fs::read_to_string(dir.path().join("reviewer.pub")).unwrap()
            )
            .unwrap()
            .fingerprint()
            .as_str()
        )
    );

    // A new puller (a node restart) with the registry down: the remembered
    // signature admits it, with no registry.
    registry.stop();
    let again = ensure(puller(Some(vec!["reviewer.pub"]))).await.unwrap();
    assert_eq!(again.signed_by, admitted.signed_by);

    // A list that trusts only the successor: the reviewer's signature no
    // longer counts, so the registry must be asked, and it is down.
    let down = ensure(puller(Some(vec![successor_pub.as_str()])))
        .await
        .unwrap_err();
    assert_eq!(down.reason, WaitingReason::ErrImagePull, "{down}");
    assert!(down.message.contains("unreachable"), "{down}");
    registry.start_again();
    let refused = ensure(puller(Some(vec![successor_pub.as_str()])))
        .await
        .unwrap_err();
    assert_eq!(refused.reason, WaitingReason::ModuleNotAllowed, "{refused}");
    assert!(
        refused
            .message
            .contains("no trusted key made this signature"),
        "{refused}"
    );
}
