//! Which modules may run at all: the station's allow-list.
//!
//! A data station must know exactly which code runs on its data. Each rule
//! names a repository (exactly, or every repository under a prefix with a
//! trailing `/*`) and, optionally, the only digests allowed from it and the
//! keys one of which must have signed the module. A module runs only if
//! some rule allows it; with no allow-list configured, every module may
//! run. The check needs only the reference and the digests the registry
//! reported, so a refused module is never downloaded, let alone executed;
//! when the rule names keys, [`Verdict::IfSignedBy`] tells the caller
//! which signature to look for (the registry path checks it before the
//! download, see `signatures`).
//!
//! This module owns the rules and their matching. It reads the key files a
//! rule names when the list is built, and never contacts a registry.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use sandlet_core::Digest;
use sandlet_trust::PublicKey;

/// One allow-list rule, as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// `registry/path/name`, or `registry/path/*` for every repository
    /// under `registry/path/`.
    pub repository: String,
    /// If given, only these digests (of the manifest or of the module
    /// layer) may run from the repository.
    #[serde(default)]
    pub digests: Option<Vec<String>>,
    /// If given, PEM public key files (relative to the station file's
    /// directory): a module from the repository runs only if one of these
    /// keys signed its manifest digest.
    #[serde(default)]
    pub keys: Option<Vec<PathBuf>>,
}

/// What a rule that covers a module asks before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing more: the module may run.
    Allowed,
    /// A valid signature of the manifest digest by one of these keys.
    IfSignedBy(Vec<PublicKey>),
}

/// The allow-list. `None` rules: no list configured, everything may run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Option<Vec<ValidRule>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ValidRule {
    repository: RepositoryPattern,
    digests: Option<Vec<Digest>>,
    keys: Option<Vec<PublicKey>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RepositoryPattern {
    Exact(String),
    Under(String),
}

/// A rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    /// A rule that is malformed or names a key file that cannot be read.
    #[error("allow-list rule {repository:?}: {reason}")]
    Rule {
        /// The rule's repository, as written.
        repository: String,
        /// What is wrong with the rule.
        reason: String,
    },
}

/// A module the allow-list refuses; `Display` is the reason on the pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("module {reference} is not allowed on this station: {reason}")]
pub struct NotAllowed {
    pub(crate) reference: String,
    pub(crate) reason: String,
}

impl AllowList {
    /// Every module may run.
    pub fn allow_all() -> Self {
        Self::default()
    }

    /// Validates `rules` (an empty list allows nothing) and reads the key
    /// files they name, relative paths from `base`.
    pub fn new(rules: Vec<AllowRule>, base: &Path) -> Result<Self, AllowListError> {
        let mut valid = Vec::with_capacity(rules.len());
        for rule in rules {
            let bad = |reason: &str| AllowListError::Rule {
                repository: rule.repository.clone(),
                reason: reason.to_owned(),
            };
            let repository = match rule.repository.strip_suffix("/*") {
                Some(prefix) if !prefix.is_empty() && !prefix.contains('*') => {
                    RepositoryPattern::Under(format!("{prefix}/"))
                }
                Some(_) => return Err(bad("a pattern is a repository path followed by /*")),
                None if rule.repository.contains('*') => {
                    return Err(bad("* is allowed only as the last path segment (path/*)"));
                }
                None if !rule.repository.contains('/') => {
                    return Err(bad(
                        "name the registry and the repository, e.g. registry.example.org/algorithms/mean",
                    ));
                }
                None => RepositoryPattern::Exact(rule.repository.clone()),
            };
            let digests = match rule.digests {
                None => None,
                Some(digests) => Some(
                    digests
                        .iter()
                        .map(|d| d.parse::<Digest>().map_err(|e| bad(&e.to_string())))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let keys = match rule.keys {
                None => None,
                Some(files) if files.is_empty() => {
                    return Err(bad(
                        "keys: [] trusts no key, so nothing could run; list public key files, or leave keys out to run unsigned modules",
                    ));
                }
                Some(files) => Some(
                    files
                        .iter()
                        .map(|file| {
                            let path = base.join(file);
                            std::fs::read_to_string(&path)
                                .map_err(|e| e.to_string())
                                .and_then(|text| {
                                    PublicKey::from_pem(&text).map_err(|e| e.to_string())
                                })
                                .map_err(|e| bad(&format!("key {}: {e}", path.display())))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            valid.push(ValidRule {
                repository,
                digests,
                keys,
            });
        }
        Ok(AllowList { rules: Some(valid) })
    }

    /// Whether any rule covers `repository` at all. Checked before the
    /// registry is contacted, so that a module of a repository no rule
    /// names causes no connection, not even a name lookup.
    pub fn check_repository(&self, reference: &str, repository: &str) -> Result<(), NotAllowed> {
        let Some(rules) = &self.rules else {
            return Ok(());
        };
        if rules.iter().any(|rule| match &rule.repository {
            RepositoryPattern::Exact(exact) => exact == repository,
            RepositoryPattern::Under(prefix) => repository.starts_with(prefix.as_str()),
        }) {
            return Ok(());
        }
        Err(NotAllowed {
            reference: reference.to_owned(),
            reason: format!("no allow-list rule covers repository {repository}"),
        })
    }

    /// Whether the module of `repository` (`registry/path/name`, no tag)
    /// with these digests may run, and if so on what condition: a rule
    /// without keys allows it outright; otherwise the keys of every rule
    /// that covers it are the ones a signature may come from.
    pub fn check(
        &self,
        reference: &str,
        repository: &str,
        manifest_digest: &Digest,
        module_digest: &Digest,
    ) -> Result<Verdict, NotAllowed> {
        let Some(rules) = &self.rules else {
            return Ok(Verdict::Allowed);
        };
        let mut repository_matched = false;
        let mut signers: Vec<PublicKey> = Vec::new();
        for rule in rules {
            let matches = match &rule.repository {
                RepositoryPattern::Exact(exact) => exact == repository,
                RepositoryPattern::Under(prefix) => repository.starts_with(prefix.as_str()),
            };
            if !matches {
                continue;
            }
            repository_matched = true;
            let pinned = match &rule.digests {
                None => true,
                Some(digests) => digests
                    .iter()
                    .any(|d| d == manifest_digest || d == module_digest),
            };
            if !pinned {
                continue;
            }
            match &rule.keys {
                None => return Ok(Verdict::Allowed),
                Some(keys) => {
                    for key in keys {
                        if !signers.contains(key) {
                            signers.push(key.clone());
                        }
                    }
                }
            }
        }
        if !signers.is_empty() {
            return Ok(Verdict::IfSignedBy(signers));
        }
        Err(NotAllowed {
            reference: reference.to_owned(),
            reason: if repository_matched {
                format!(
                    "digest {manifest_digest} (module {module_digest}) is not one of the pinned digests of {repository}"
                )
            } else {
                format!("no allow-list rule covers repository {repository}")
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repository: &str, digests: Option<Vec<String>>) -> AllowRule {
        AllowRule {
            repository: repository.to_owned(),
            digests,
            keys: None,
        }
    }

    fn new(rules: Vec<AllowRule>) -> Result<AllowList, AllowListError> {
        AllowList::new(rules, Path::new("."))
    }

    #[test]
    fn a_repository_no_rule_covers_is_refused_before_its_digests_are_known() {
        let list = new(vec![
            rule("127.0.0.1:5000/v6/*", None),
            rule(
                "127.0.0.1:5000/tools/mean",
                Some(vec![Digest::of(b"m").to_string()]),
            ),
        ])
        .unwrap();
        for covered in ["127.0.0.1:5000/v6/mean", "127.0.0.1:5000/tools/mean"] {
            assert!(list.check_repository("r", covered).is_ok(), "{covered}");
        }
        for other in [
            "ghcr.io/vantage6/infrastructure/alpine",
            "127.0.0.1:5001/v6/mean",
            "127.0.0.1:5000/v6",
            "127.0.0.1:5000/tools/mean2",
            "127.0.0.1:5000/v6x/mean",
        ] {
            let e = list.check_repository("r", other).unwrap_err();
            assert!(
                e.reason.contains("no allow-list rule covers"),
                "{other}: {e}"
            );
        }
        assert!(
            AllowList::allow_all()
                .check_repository("r", "ghcr.io/x")
                .is_ok()
        );
    }

    #[test]
    fn without_a_list_everything_may_run() {
        let d = Digest::of(b"m");
        assert!(AllowList::allow_all().check("r/x:1", "r/x", &d, &d).is_ok());
    }

    #[test]
    fn repositories_match_exactly_or_under_a_prefix() {
        let list = new(vec![
            rule("registry.example.org/algorithms/*", None),
            rule("127.0.0.1:5000/tools/mean", None),
        ])
        .unwrap();
        let d = Digest::of(b"m");
        assert!(
            list.check("a", "registry.example.org/algorithms/mean", &d, &d)
                .is_ok()
        );
        assert!(
            list.check("a", "registry.example.org/algorithms/deep/mean", &d, &d)
                .is_ok()
        );
        assert!(list.check("a", "127.0.0.1:5000/tools/mean", &d, &d).is_ok());
        // A prefix is a path, not a string prefix.
        let err = list
            .check("a", "registry.example.org/algorithmsX/mean", &d, &d)
            .unwrap_err();
        assert!(err.reason.contains("no allow-list rule covers"), "{err}");
        assert!(
            list.check("a", "127.0.0.1:5000/tools/mean2", &d, &d)
                .is_err()
        );
        assert!(new(vec![]).unwrap().check("a", "r/x", &d, &d).is_err());
    }

    #[test]
    fn pinned_digests_allow_only_those_modules() {
        let good = Digest::of(b"reviewed");
        let bad = Digest::of(b"changed");
        let manifest = Digest::of(b"manifest");
        let list = new(vec![rule(
            "r.example/alg/mean",
            Some(vec![good.to_string()]),
        )])
        .unwrap();
        assert!(
            list.check(
                "r.example/alg/mean:v1",
                "r.example/alg/mean",
                &manifest,
                &good
            )
            .is_ok()
        );
        let err = list
            .check(
                "r.example/alg/mean:v1",
                "r.example/alg/mean",
                &manifest,
                &bad,
            )
            .unwrap_err();
        assert_eq!(err.reference, "r.example/alg/mean:v1");
        assert!(
            err.reason.contains("not one of the pinned digests"),
            "{err}"
        );
        // The manifest digest may be pinned instead of the layer's.
        let list = new(vec![rule(
            "r.example/alg/mean",
            Some(vec![manifest.to_string()]),
        )])
        .unwrap();
        assert!(
            list.check("a", "r.example/alg/mean", &manifest, &bad)
                .is_ok()
        );
    }

    #[test]
    fn malformed_rules_are_refused() {
        for (repository, digests) in [
            ("*", None),
            ("r.example/*/mean", None),
            ("mean", None),
            ("r.example/alg/mean", Some(vec!["sha256:nope".to_owned()])),
        ] {
            let err = new(vec![rule(repository, digests)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("allow-list rule {repository:?}")),
                "{err}"
            );
        }
    }

    fn keyed(repository: &str, digests: Option<Vec<String>>, keys: &[&str]) -> AllowRule {
        AllowRule {
            keys: Some(keys.iter().map(PathBuf::from).collect()),
            ..rule(repository, digests)
        }
    }

    /// Two public keys written as `a.pub` and `b.pub` in a new directory.
    fn two_keys() -> (tempfile::TempDir, PublicKey, PublicKey) {
        let dir = tempfile::tempdir().unwrap();
        let a = sandlet_trust::PrivateKey::generate().public();
        let b = sandlet_trust::PrivateKey::generate().public();
        std::fs::write(dir.path().join("a.pub"), a.to_pem()).unwrap();
        std::fs::write(dir.path().join("b.pub"), b.to_pem()).unwrap();
        (dir, a, b)
    }

    #[test]
    fn rules_with_keys_ask_for_a_signature_by_one_of_them() {
        let (dir, a, b) = two_keys();
        let d = Digest::of(b"m");
        let list = AllowList::new(
            vec![
                keyed("r.example/alg/*", None, &["a.pub"]),
                // Relative to the base, or absolute.
                keyed(
                    "r.example/alg/mean",
                    None,
                    &[dir.path().join("b.pub").to_str().unwrap(), "a.pub"],
                ),
            ],
            dir.path(),
        )
        .unwrap();
        // Both rules cover mean: either key will do, each named once.
        assert_eq!(
            list.check("x", "r.example/alg/mean", &d, &d),
            Ok(Verdict::IfSignedBy(vec![a.clone(), b.clone()]))
        );
        assert_eq!(
            list.check("x", "r.example/alg/sum", &d, &d),
            Ok(Verdict::IfSignedBy(vec![a.clone()]))
        );
        // Keys do not widen the repositories.
        assert!(list.check("x", "r.example/other/mean", &d, &d).is_err());

        // A rule without keys that covers the module lets it run unsigned,
        // whatever order the rules are in.
        for order in [["k", "free"], ["free", "k"]] {
            let rules = order
                .iter()
                .map(|which| match *which {
                    "k" => keyed("r.example/alg/*", None, &["a.pub"]),
                    _ => rule("r.example/alg/tool", None),
                })
                .collect();
            let list = AllowList::new(rules, dir.path()).unwrap();
            assert_eq!(
                list.check("x", "r.example/alg/tool", &d, &d),
                Ok(Verdict::Allowed)
            );
            assert_eq!(
                list.check("x", "r.example/alg/mean", &d, &d),
                Ok(Verdict::IfSignedBy(vec![a.clone()]))
            );
        }
    }

    #[test]
    fn pinned_digests_and_keys_must_both_hold() {
        let (dir, a, _) = two_keys();
        let good = Digest::of(b"reviewed");
        let bad = Digest::of(b"changed");
        let list = AllowList::new(
            vec![keyed(
                "r.example/alg/mean",
                Some(vec![good.to_string()]),
                &["a.pub"],
            )],
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            list.check("x", "r.example/alg/mean", &good, &good),
            Ok(Verdict::IfSignedBy(vec![a]))
        );
        let err = list
            .check("x", "r.example/alg/mean", &bad, &bad)
            .unwrap_err();
        assert!(
            err.reason.contains("not one of the pinned digests"),
            "{err}"
        );
    }

    #[test]
    fn key_files_that_cannot_be_used_are_named() {
        let (dir, _, _) = two_keys();
        std::fs::write(
            dir.path().join("secret.pem"),
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("junk.pub"), "not a key").unwrap();
        for (keys, expected) in [
            (vec![], "keys: [] trusts no key"),
            (vec!["missing.pub"], "missing.pub: No such file"),
            (vec!["a.pub", "secret.pem"], "secret.pem: holds a PEM"),
            (vec!["junk.pub"], "junk.pub: holds no PEM block"),
        ] {
            let err = AllowList::new(vec![keyed("r.example/alg/mean", None, &keys)], dir.path())
                .unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("allow-list rule \"r.example/alg/mean\"")
                    && text.contains(expected),
                "{keys:?}: {text}"
            );
        }
    }
}
